"""Writes the seed corpora of the fuzz targets for network and config input
(fuzz/corpus/<target>/seed-*), from the examples of docs/api.md,
docs/security.md and the tests. Run from the repository root:
`python3 fuzz/seeds.py`. Receipts and resume tokens are signed with the fixed
key of `pubq::fuzzing` (32 bytes of 7), the API key and HS256 secret are
those of `src/fuzzing/auth.rs`.
"""
import base64, hmac, hashlib, json, os, struct
root = "fuzz/corpus"
KEY = bytes([7]*32)
def b64u(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def receipt(uid, seq, lease):
    body = struct.pack(">QQI", uid, seq, lease)
    tag = hmac.new(KEY, body, hashlib.sha256).digest()[:12]
    return b64u(body + tag)
def resume(q):
    return q + "." + hmac.new(KEY, b"resume:" + q.encode(), hashlib.sha256).digest()[:16].hex()
R1, R2 = receipt(42, 7, 3), receipt(1 << 40, 123456, 1)
def put(t, name, data):
    os.makedirs(f"{root}/{t}", exist_ok=True)
    if isinstance(data, str): data = data.encode()
    open(f"{root}/{t}/seed-{name}", "wb").write(data)

single = '{"body": "text", "body_encoding": "text", "attributes": {"k": "v"}, "delay_seconds": 5}'
batch = json.dumps({"messages": [
    {"body": "hello", "attributes": {"kind": "a-order", "region": "eu"}},
    {"body": "aGVsbG8=", "body_encoding": "base64"},
    {"body": "{\"kind\": \"x\", \"n\": 5}", "deliver_at": "2025-01-01T00:00:00Z"},
    {"body": "late", "deliver_at": "2026-01-01T00:00:00+01:00"},
    {"body": 5},
    {"body": "fifo", "group_id": "g", "dedup_id": "d"},
    {"body": "x", "poison": True},
]})
put("http_body", "publish-single", b"\x00" + single.encode())
put("http_body", "publish-batch", b"\x00" + batch.encode())
put("http_body", "queue-settings", b"\x01" + json.dumps({"fifo": False, "dedup_window_seconds": 300, "delay_seconds": 0, "visibility_timeout_seconds": 30, "retention_seconds": 345600, "max_message_bytes": 1048576, "receive_wait_seconds": 0, "dead_letter": {"queue": "email-dlq", "max_receives": 5}, "retry_backoff": {"initial_seconds": 1, "max_seconds": 60}}).encode())
put("http_body", "queue-settings-null", b"\x01" + b'{"dead_letter": null, "retry_backoff": null, "fifo": true, "content_based_dedup": true}')
put("http_body", "queue-settings-empty", b"\x01")
put("http_body", "topic-settings", b"\x02" + b'{"fifo": true, "content_based_dedup": true, "dedup_window_seconds": 600}')
put("http_body", "receive", b"\x03" + b'{"max": 10, "wait_seconds": 1, "visibility_timeout_seconds": 30}')
put("http_body", "ack", b"\x04" + json.dumps({"receipts": [R1, R2, "garbage"]}).encode())
put("http_body", "nack", b"\x04" + json.dumps({"receipts": [R1], "delay_seconds": 10}).encode())
put("http_body", "visibility", b"\x04" + json.dumps({"receipts": [R2], "seconds": 0}).encode())
put("http_body", "subscribe", b"\x05" + json.dumps({"filter": {"type": ["order_placed"], "region": [{"prefix": "eu-"}], "size": [{"numeric": [">=", 0, "<", 100]}]}}).encode())
put("http_body", "redrive", b"\x06" + b'{"max_per_second": 5}')

put("publish", "single", single)
put("publish", "batch", batch)
put("publish", "body-json", json.dumps({"messages": [{"body": json.dumps({"kind": "a", "nested": {"x": [1, 2]}})}, {"body": "plain", "attributes": {"kind": "abc"}}]}))

ws = [
    {"op": "subscribe", "sub": "s1", "queue": "q", "prefetch": 10, "ref": 1},
    {"op": "subscribe", "sub": "s2", "topic": "t", "filter": {"type": ["a"], "n": [{"numeric": [">", 1.5]}]}, "prefetch": 10, "auto_ack": False, "ref": "x"},
    {"op": "subscribe", "sub": "any", "topic": "t", "resume": resume("ws-t-00ff")},
    {"op": "unsubscribe", "sub": "s1", "ref": [1, {"a": None}]},
    {"op": "ack", "receipts": [R1, R2]},
    {"op": "nack", "receipts": [R1], "delay_seconds": 5, "ref": 1.25},
    {"op": "publish", "topic": "t", "body": "hi", "attributes": {"a": "b"}},
    {"op": "publish", "queue": "q", "body": "aGk=", "body_encoding": "base64", "delay_seconds": 3},
    {"op": "auth", "token": "pubq_fuzzing-key-not-a-secret-AAAAAAAAAAAAAAAAAAAAA"},
]
for i, f in enumerate(ws):
    put("ws_frame", f"{f['op']}-{i}", json.dumps(f))
put("ws_frame", "not-json", "not json")
put("ws_frame", "unknown-op", '{"op": "dance", "ref": 12345678901234567890}')

pol = [
    ({"type": ["order_placed", "order_cancelled"]}, {"type": "order_placed"}, ""),
    ({"region": [{"prefix": "eu-"}], "file": [{"suffix": ".png"}], "c": [{"equals-ignore-case": "X"}]}, {"region": "eu-west", "file": "a.png", "c": "x"}, ""),
    ({"env": [{"anything-but": ["test", 5]}], "p": [{"anything-but": {"prefix": "x"}}], "q": [{"exists": False}]}, {"env": "prod", "p": "y"}, ""),
    ({"size": [{"numeric": [">=", 0, "<", 100]}], "eq": [{"numeric": ["=", 1e3]}]}, {"size": "12.5", "eq": "1000"}, ""),
    ({"scope": "body", "order": {"kind": ["paid"], "total": [{"numeric": [">", 10]}], "meta": {"tag": [{"exists": True}]}}, "flag": [True, None]}, {}, json.dumps({"order": {"kind": "paid", "total": 12, "meta": {"tag": "a"}}, "flag": True})),
    ({"scope": "body", "missing": {"deep": [{"exists": False}]}}, {}, "not json"),
]
for i, (p, a, b) in enumerate(pol):
    put("filter_policy", f"policy-{i}", json.dumps(p).encode() + b"\0" + json.dumps(a).encode() + b"\0" + b.encode())

cfg = '[server]\nlisten = "127.0.0.1:7733"\ndata_dir = "./pubq-data"\nfsync = "always"\n\n[[topics]]\nname = "orders"\n\n[[queues]]\nname = "email"\nvisibility_timeout_seconds = 60\ndead_letter = { queue = "email-dlq", max_receives = 5 }\n\n[[queues]]\nname = "email-dlq"\n\n[[subscriptions]]\ntopic = "orders"\nqueue = "email"\nfilter = { type = ["order_placed"] }\n'
put("config_file", "declare", cfg)
put("config_file", "auth", '''[[auth.keys]]
id = "ci"
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
grants = { publish = ["topic:orders.*", "queue:jobs"], consume = ["queue:email-*"], admin = [] }
publish_rate = 50
receive_rate = 200

[auth.jwt]
hs256_secret_file = "/etc/pubq/jwt.secret"
rs256_public_keys = ["/etc/pubq/idp-2025.pem"]
audience = "pubq"
issuer = "https://idp.example.com/"
leeway_seconds = 30
''')
put("config_file", "server", '''[server]
listen = "127.0.0.1:9000"
memory = true
max_request_bytes = 1000
max_queues = 2
tls_cert = "cert.pem"
tls_key = "key.pem"
max_connections = 50
header_timeout_seconds = 3
''')
put("config_file", "fifo-loop", '''[[topics]]
name = "t"
fifo = true
content_based_dedup = true

[[queues]]
name = "a"
fifo = true
dead_letter = { queue = "b", max_receives = 2 }

[[queues]]
name = "b"
fifo = true
dead_letter = { queue = "a", max_receives = 2 }
retry_backoff = { initial_seconds = 1, max_seconds = 5 }

[[subscriptions]]
topic = "t"
queue = "a"
filter = { scope = "body", x = { y = [{ numeric = [">", 1] }] } }
''')

KEYTOK = "pubq_fuzzing-key-not-a-secret-AAAAAAAAAAAAAAAAAAAAA"
claims = {"sub": "alice", "exp": 4102444800, "aud": "pubq", "pubq": {"publish": ["topic:orders.*"], "consume": ["queue:email-*"], "admin": ["queue:admin"]}}
put("auth_token", "api-key", b"\x00" + KEYTOK.encode())
put("auth_token", "unknown-jwt", b"\x00" + b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln")
put("auth_token", "claims", b"\x01" + json.dumps(claims).encode())
put("auth_token", "claims-expired", b"\x01" + json.dumps({"sub": "a", "exp": 1000, "aud": "pubq"}).encode())
put("auth_token", "claims-nbf", b"\x01" + json.dumps({"sub": "a", "exp": 4102444800, "nbf": 4102444000, "aud": ["pubq", "x"], "iss": "idp"}).encode())
put("auth_token", "header-claims", b"\x02" + b'{"alg":"HS256","typ":"JWT","kid":"k1"}' + b"\0" + json.dumps(claims).encode())
put("auth_token", "header-rs256", b"\x02" + b'{"alg":"RS256"}' + b"\0" + json.dumps(claims).encode())
put("auth_token", "bearer", b"\x03" + b"Bearer " + KEYTOK.encode())
put("auth_token", "bearer-lower", b"\x03" + b"bearer  x.y.z ")
put("auth_token", "query", b"\x04" + b"token=" + KEYTOK.encode() + b"&x=%41")

put("grant_pattern", "topic-prefix", "topic:orders.*\norders.eu\norders.\norders\nxorders.eu")
put("grant_pattern", "queue-stars", "queue:a*b*c\naXXbYYc\nabc\nabcd\n")
put("grant_pattern", "everything", "queue:*\nanything\n")

put("receipt", "valid", R1)
put("receipt", "valid-2", R2)
put("receipt", "resume", resume("ws-orders-00ff"))
put("receipt", "fields", bytes(range(21)))
