// pubq live page. Plain JavaScript, no build step, no external resources.
// Uses only the public API: the HTTP endpoints under /v1 and the WebSocket
// at /v1/ws. Everything taken from the server goes into the DOM as text
// (textContent), never as HTML.
'use strict';

(function () {
  const POLL_MS = 1000;
  const MAX_ROWS_PER_WATCH = 100;
  const MAX_ERRORS = 8;
  const FRAME_ANSWER_MS = 15000;

  // A token for servers with keys configured: open the page as /?token=...
  const TOKEN = new URLSearchParams(location.search).get('token');

  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;

  // ---------------------------------------------------------------- DOM

  /** Builds an element. `props`: text, cls, testid, title, data {k: v},
   *  attrs {k: v}, on {event: fn}. Children: nodes or strings (as text). */
  function h(tag, props, ...children) {
    const e = document.createElement(tag);
    const p = props || {};
    if (p.text !== undefined) e.textContent = String(p.text);
    if (p.cls) e.className = p.cls;
    if (p.testid) e.dataset.testid = p.testid;
    if (p.title) e.title = String(p.title);
    if (p.data) for (const [k, v] of Object.entries(p.data)) e.dataset[k] = String(v);
    if (p.attrs) for (const [k, v] of Object.entries(p.attrs)) e.setAttribute(k, String(v));
    if (p.on) for (const [k, f] of Object.entries(p.on)) e.addEventListener(k, f);
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      e.append(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return e;
  }

  function setText(e, text) {
    const t = String(text);
    if (e.textContent !== t) e.textContent = t;
  }

  function clock() {
    return new Date().toLocaleTimeString([], { hour12: false });
  }

  // ------------------------------------------------------------- errors

  /** Shows an error in the page. `err`: {code, message} or an Error. */
  function showError(context, err) {
    const code = (err && err.code) || 'Error';
    const message = (err && err.message) || String(err);
    const list = $('error-list');
    list.prepend(h('li', { testid: 'error', data: { code } },
      h('span', { cls: 'time', text: clock() }),
      h('span', { cls: 'ctx', text: context }),
      h('code', { cls: 'code', text: code }),
      h('span', { cls: 'msg', text: message })));
    while (list.children.length > MAX_ERRORS) list.lastChild.remove();
    $('errors').hidden = false;
  }

  $('errors-clear').addEventListener('click', () => {
    $('error-list').replaceChildren();
    $('errors').hidden = true;
  });

  // --------------------------------------------------------------- HTTP

  class ApiError extends Error {
    constructor(code, message, status) {
      super(message);
      this.code = code;
      this.status = status;
    }
  }

  /** One HTTP call; resolves to the JSON answer or throws an ApiError
   *  carrying the server's {"error": {"code", "message"}}. */
  async function api(method, path, body) {
    const headers = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (TOKEN) headers.authorization = 'Bearer ' + TOKEN;
    let res;
    try {
      res = await fetch(path, {
        method, headers, cache: 'no-store',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError('Unreachable', 'cannot reach the server (' + e.message + ')', 0);
    }
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    if (!res.ok) {
      const e = data && data.error;
      throw new ApiError((e && e.code) || 'HTTP' + res.status,
        (e && e.message) || text || res.statusText, res.status);
    }
    return data;
  }

  // ---------------------------------------------------------- polling

  const seen = {
    queues: new Map(),   // name -> describe
    topics: new Map(),   // name -> describe
    prev: new Map(),     // "q:name" / "t:name" -> {t, counters}
  };
  let lastPollError = null;

  function setPill(e, state, text) {
    e.dataset.state = state;
    setText(e, text);
  }

  async function describeAll(kind, names) {
    const out = await Promise.all(names.map((n) =>
      api('GET', '/v1/' + kind + '/' + enc(n)).catch((e) => {
        if (e.status === 404) return null;   // deleted between list and describe
        throw e;
      })));
    return out.filter(Boolean);
  }

  /** Lists and describes every queue and topic, and shows them. */
  async function refresh() {
    const [ql, tl] = await Promise.all([api('GET', '/v1/queues'), api('GET', '/v1/topics')]);
    const [queues, topics] = await Promise.all([
      describeAll('queues', ql.queues || []),
      describeAll('topics', tl.topics || []),
    ]);
    const now = performance.now();
    renderQueues(queues, now);
    renderTopics(topics, now);
    renderNames();
  }

  async function poll() {
    try {
      await refresh();
      lastPollError = null;
      setPill($('http-status'), 'ok', 'HTTP: live · ' + clock());
    } catch (e) {
      const key = e.code + ' ' + e.message;
      if (key !== lastPollError) showError('refresh', e);
      lastPollError = key;
      setPill($('http-status'), 'error', 'HTTP: ' + (e.code || 'error'));
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  /** Per-second rates of some counters between two successive describes. */
  function rates(key, now, counters) {
    // Over at least 0.8 s, so an extra refresh right after a change does
    // not make the rates jump.
    const prev = seen.prev.get(key);
    if (prev && now - prev.t < 800) return prev.out;
    const out = {};
    for (const k of Object.keys(counters)) {
      if (!prev) { out[k] = null; continue; }
      const d = counters[k] - prev.counters[k];
      out[k] = d < 0 ? null : d / ((now - prev.t) / 1000);
    }
    seen.prev.set(key, { t: now, counters, out });
    return out;
  }

  function fmtRate(r) {
    if (r === null || r === undefined) return '–';
    if (r === 0) return '0';
    return r < 10 ? r.toFixed(1) : Math.round(r).toString();
  }

  /** Keeps `tbody`'s rows in the order of `items`, one per key, creating
   *  rows once and updating them in place (so buttons survive a refresh). */
  function syncRows(tbody, items, keyOf, create, update) {
    const existing = new Map();
    for (const tr of Array.from(tbody.children)) existing.set(tr.dataset.key, tr);
    items.forEach((item, i) => {
      const key = keyOf(item);
      let tr = existing.get(key);
      if (!tr) {
        tr = create(item);
        tr.dataset.key = key;
      }
      existing.delete(key);
      update(tr, item);
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
    });
    for (const tr of existing.values()) tr.remove();
  }

  /** Sets a number cell, flashing it when the value changed. */
  function setNum(td, value) {
    const t = String(value);
    if (td.textContent === t) return;
    const had = td.textContent !== '';
    td.textContent = t;
    if (had) {
      td.classList.remove('changed');
      void td.offsetWidth;   // restart the animation
      td.classList.add('changed');
    }
  }

  function cell(testid, cls) {
    return h('td', { testid, cls });
  }

  function badge(text, cls, testid, title) {
    return h('span', { cls: 'badge ' + cls, text, testid, title });
  }

  function renderQueues(queues, now) {
    seen.queues = new Map(queues.map((q) => [q.name, q]));
    const tbody = $('queues').tBodies[0];
    syncRows(tbody, queues, (q) => q.name, (q) => {
      const tr = h('tr', { testid: 'queue-row', data: { queue: q.name } },
        h('td', { cls: 'name' },
          h('div', null,
            h('span', { cls: 'qname', testid: 'q-name', text: q.name, title: q.name }),
            h('span', { cls: 'badges', testid: 'q-badges' })),
          h('div', { cls: 'details' },
            h('span', { testid: 'q-dlq' }), h('span', { testid: 'q-subscribed' }))),
        cell('q-visible', 'num'), cell('q-delayed', 'num'), cell('q-in-flight', 'num'),
        cell('q-recv-rate', 'num'), cell('q-ack-rate', 'num'), cell('q-dead-lettered', 'num'),
        h('td', { cls: 'actions' }));
      return tr;
    }, (tr, q) => {
      const s = q.stats || {};
      const dlqSources = q.dead_letter_sources || [];
      const isDlq = dlqSources.length > 0;
      tr.classList.toggle('is-dlq', isDlq);
      tr.classList.toggle('is-temp', !!q.temporary);
      tr.dataset.dlq = isDlq ? 'true' : 'false';
      tr.dataset.temporary = q.temporary ? 'true' : 'false';
      const c = (id) => tr.querySelector('[data-testid="' + id + '"]');

      const badges = [];
      if (q.settings && q.settings.fifo) badges.push(badge('FIFO', 'fifo', 'badge-fifo'));
      if (q.temporary) badges.push(badge('temporary', 'temp', 'badge-temp',
        'a WebSocket topic subscription\'s own queue'));
      if (isDlq) badges.push(badge('DLQ', 'dlq', 'badge-dlq',
        'dead-letter queue of ' + dlqSources.join(', ')));
      const sig = badges.map((b) => b.textContent).join(',');
      const holder = c('q-badges');
      if (holder.dataset.sig !== sig) {
        holder.replaceChildren(...badges);
        holder.dataset.sig = sig;
      }

      setNum(c('q-visible'), s.visible);
      setNum(c('q-delayed'), s.delayed);
      setNum(c('q-in-flight'), s.in_flight);
      const r = rates('q:' + q.name, now, { received: s.received, acked: s.acked });
      setText(c('q-recv-rate'), fmtRate(r.received));
      setText(c('q-ack-rate'), fmtRate(r.acked));
      setNum(c('q-dead-lettered'), s.dead_lettered);
      const dl = q.settings && q.settings.dead_letter;
      setText(c('q-dlq'), dl ? 'dead letters → ' + dl.queue + ' after ' + dl.max_receives +
        ' receive' + (dl.max_receives === 1 ? '' : 's') : '');
      const from = q.subscribed_to || [];
      setText(c('q-subscribed'), from.length ? 'gets topic ' + from.join(', ') : '');
      const src = c('q-dlq').parentElement;
      src.hidden = !dl && !from.length;

      const actions = tr.lastElementChild;
      const want = (q.temporary ? '' : 'watch') + (isDlq ? ',redrive' : '');
      if (actions.dataset.sig !== want) {
        actions.dataset.sig = want;
        actions.replaceChildren(...[
          q.temporary ? null : h('button', {
            cls: 'small', text: 'watch', testid: 'watch-queue', attrs: { type: 'button' },
            on: { click: () => addWatch('queue', q.name, prefetch()) },
          }),
          isDlq ? h('button', {
            cls: 'small', text: 'redrive', testid: 'redrive', attrs: { type: 'button' },
            title: 'move its messages back to the queues they came from',
            on: { click: () => redrive(q.name) },
          }) : null,
        ].filter(Boolean));
      }
    });
    $('queues-empty').hidden = queues.length > 0;
    setText($('queue-count'), queues.length ? '(' + queues.length + ')' : '');
    for (const key of Array.from(seen.prev.keys())) {
      if (key.startsWith('q:') && !seen.queues.has(key.slice(2))) seen.prev.delete(key);
    }
  }

  function renderTopics(topics, now) {
    seen.topics = new Map(topics.map((t) => [t.name, t]));
    const tbody = $('topics').tBodies[0];
    syncRows(tbody, topics, (t) => t.name, (t) => h('tr', { testid: 'topic-row', data: { topic: t.name } },
      h('td', { cls: 'name' },
        h('span', { cls: 'qname', testid: 't-name', text: t.name, title: t.name }),
        h('span', { cls: 'badges', testid: 't-badges' })),
      cell('t-subscriptions', 'subs'),
      cell('t-published', 'num'), cell('t-pub-rate', 'num'),
      cell('t-delivered', 'num'), cell('t-dropped', 'num'),
      h('td', { cls: 'actions' },
        h('button', {
          cls: 'small', text: 'watch', testid: 'watch-topic', attrs: { type: 'button' },
          on: { click: () => addWatch('topic', t.name, prefetch()) },
        }),
        h('button', {
          cls: 'small', text: 'publish…', testid: 'publish-to', attrs: { type: 'button' },
          on: { click: () => { $('publish-topic').value = t.name; $('publish-body').focus(); } },
        }))),
    (tr, t) => {
      const s = t.stats || {};
      const c = (id) => tr.querySelector('[data-testid="' + id + '"]');
      const holder = c('t-badges');
      const fifo = !!(t.settings && t.settings.fifo);
      if (holder.dataset.sig !== String(fifo)) {
        holder.replaceChildren(...(fifo ? [badge('FIFO', 'fifo', 'badge-fifo')] : []));
        holder.dataset.sig = String(fifo);
      }
      const subs = t.subscriptions || [];
      const sig = JSON.stringify(subs);
      const sc = c('t-subscriptions');
      if (sc.dataset.sig !== sig) {
        sc.dataset.sig = sig;
        sc.replaceChildren(...subs.map((sub) => {
          const temp = seen.queues.get(sub.queue);
          const label = temp && temp.temporary ? 'ws (temporary)' : sub.queue;
          return h('span', {
            cls: 'chip' + (sub.filter ? ' filtered' : ''),
            text: label + (sub.filter ? ' · filter' : ''),
            title: sub.queue + (sub.filter ? '\nfilter: ' + JSON.stringify(sub.filter) : ''),
          });
        }));
        if (!subs.length) sc.append(h('span', { cls: 'muted', text: 'none' }));
      }
      setNum(c('t-published'), s.published);
      const r = rates('t:' + t.name, now, { published: s.published });
      setText(c('t-pub-rate'), fmtRate(r.published));
      setNum(c('t-delivered'), s.delivered);
      setNum(c('t-dropped'), s.dropped);
    });
    $('topics-empty').hidden = topics.length > 0;
    setText($('topic-count'), topics.length ? '(' + topics.length + ')' : '');
  }

  /** The datalists behind the name inputs. */
  function renderNames() {
    const fill = (id, names) => {
      const dl = $(id);
      const sig = names.join('\n');
      if (dl.dataset.sig === sig) return;
      dl.dataset.sig = sig;
      dl.replaceChildren(...names.map((n) => h('option', { attrs: { value: n } })));
    };
    fill('names-topics', Array.from(seen.topics.keys()));
    fill('names-queues', Array.from(seen.queues.values()).filter((q) => !q.temporary).map((q) => q.name));
  }

  async function redrive(name) {
    try {
      const r = await api('POST', '/v1/queues/' + enc(name) + '/redrive', {});
      showNotice('redrive of ' + name + ': ' + r.messages + ' message(s) going back');
    } catch (e) {
      showError('redrive ' + name, e);
    }
  }

  function showNotice(text) {
    const list = $('error-list');
    list.prepend(h('li', { cls: 'notice', testid: 'notice' },
      h('span', { cls: 'time', text: clock() }), h('span', { cls: 'msg', text })));
    while (list.children.length > MAX_ERRORS) list.lastChild.remove();
    $('errors').hidden = false;
  }

  // -------------------------------------------------------------- forms

  function formStatus(id, ok, text) {
    const e = $(id);
    e.dataset.state = ok ? 'ok' : 'error';
    e.textContent = text;
  }

  function errText(e) {
    return (e.code || 'Error') + ': ' + e.message;
  }

  $('topic-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = $('topic-name').value.trim();
    try {
      await api('PUT', '/v1/topics/' + enc(name), { fifo: $('topic-fifo').checked });
      formStatus('topic-result', true, 'topic ' + name + ' is ready');
      poll.now();
    } catch (e) {
      formStatus('topic-result', false, errText(e));
      showError('create topic ' + name, e);
    }
  });

  $('queue-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = $('queue-name').value.trim();
    const fifo = $('queue-fifo').checked;
    const body = { fifo };
    const vis = $('queue-visibility').value.trim();
    if (vis !== '') body.visibility_timeout_seconds = Number(vis);
    const dlq = $('queue-dlq').value.trim();
    try {
      if (dlq) {
        body.dead_letter = { queue: dlq, max_receives: Number($('queue-max-receives').value || 3) };
        if ($('queue-dlq-create').checked && !seen.queues.has(dlq)) {
          await api('PUT', '/v1/queues/' + enc(dlq), { fifo });
        }
      }
      await api('PUT', '/v1/queues/' + enc(name), body);
      formStatus('queue-result', true, 'queue ' + name + ' is ready' +
        (dlq ? ', dead letters go to ' + dlq : ''));
      poll.now();
    } catch (e) {
      formStatus('queue-result', false, errText(e));
      showError('create queue ' + name, e);
    }
  });

  $('sub-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const topic = $('sub-topic').value.trim();
    const queue = $('sub-queue').value.trim();
    const ctx = 'subscribe ' + queue + ' to ' + topic;
    const body = {};
    const f = $('sub-filter').value.trim();
    if (f) {
      try {
        body.filter = JSON.parse(f);
      } catch (e) {
        const err = { code: 'InvalidFilter', message: 'the filter is not JSON: ' + e.message };
        formStatus('sub-result', false, errText(err));
        showError(ctx, err);
        return;
      }
    }
    try {
      await api('PUT', '/v1/topics/' + enc(topic) + '/subscriptions/' + enc(queue), body);
      formStatus('sub-result', true, queue + ' now gets ' + topic);
      poll.now();
    } catch (e) {
      formStatus('sub-result', false, errText(e));
      showError(ctx, e);
    }
  });

  /** `k=v` lines into an attributes object. */
  function parseAttrs(text) {
    const attrs = {};
    text.split('\n').forEach((line, i) => {
      const l = line.trim();
      if (!l) return;
      const at = l.indexOf('=');
      if (at <= 0) {
        throw new ApiError('InvalidAttributes', 'line ' + (i + 1) + ' is not k=v: ' + l, 0);
      }
      attrs[l.slice(0, at).trim()] = l.slice(at + 1).trim();
    });
    return attrs;
  }

  $('publish-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const topic = $('publish-topic').value.trim();
    const out = $('publish-result');
    out.hidden = false;
    try {
      const msg = { body: $('publish-body').value };
      const attrs = parseAttrs($('publish-attrs').value);
      if (Object.keys(attrs).length) msg.attributes = attrs;
      const g = $('publish-group').value.trim();
      const d = $('publish-dedup').value.trim();
      if (g) msg.group_id = g;
      if (d) msg.dedup_id = d;
      const r = await api('POST', '/v1/topics/' + enc(topic) + '/publish', msg);
      out.dataset.state = 'ok';
      out.textContent = clock() + '  published to ' + topic + '\n' + JSON.stringify(r, null, 2);
      poll.now();
    } catch (e) {
      out.dataset.state = 'error';
      out.textContent = clock() + '  ' + errText(e);
      showError('publish to ' + topic, e);
    }
  });

  // ---------------------------------------------------------- WebSocket

  const conn = {
    sock: null,
    open: false,
    nextRef: 1,
    pending: new Map(),     // ref -> {resolve, timer}
    retry: 0,
    timer: null,
  };
  const watches = new Map(); // sub -> watch
  let nextSub = 1;

  function wsUrl() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return proto + '//' + location.host + '/v1/ws' + (TOKEN ? '?token=' + enc(TOKEN) : '');
  }

  function wantConnection() {
    for (const w of watches.values()) if (w.active) return true;
    return false;
  }

  function connect() {
    if (conn.sock) return;
    clearTimeout(conn.timer);
    conn.timer = null;
    setPill($('ws-status'), 'connecting', 'WebSocket: connecting…');
    let sock;
    try {
      sock = new WebSocket(wsUrl());
    } catch (e) {
      showError('WebSocket', e);
      scheduleReconnect();
      return;
    }
    conn.sock = sock;
    sock.addEventListener('open', () => {
      conn.open = true;
      conn.retry = 0;
      setPill($('ws-status'), 'open', 'WebSocket: connected');
      for (const w of watches.values()) if (w.active) subscribe(w);
    });
    sock.addEventListener('message', (ev) => {
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch (e) {
        showError('WebSocket', { code: 'BadFrame', message: 'a frame that is not JSON' });
        return;
      }
      onFrame(f);
    });
    sock.addEventListener('close', (ev) => {
      conn.sock = null;
      conn.open = false;
      const why = 'closed' + (ev.code ? ' ' + ev.code : '') + (ev.reason ? ' ' + ev.reason : '');
      for (const [ref, p] of conn.pending) {
        clearTimeout(p.timer);
        p.resolve({ op: 'error', ref, error: { code: 'ConnectionLost', message: 'the WebSocket ' + why } });
      }
      conn.pending.clear();
      for (const w of watches.values()) {
        // Unacked messages go back to the queue at once on a disconnect.
        for (const row of w.rows.values()) {
          if (!row.settled) settle(row, 'returned', 'back in the queue (connection lost)');
        }
        if (w.active) setWatchState(w, 'reconnecting', 'reconnecting…');
      }
      if (![1000, 1005, 1006, 4000].includes(ev.code)) {
        showError('WebSocket', { code: 'Closed' + ev.code, message: ev.reason || 'the server closed the connection' });
      }
      if (wantConnection()) {
        setPill($('ws-status'), 'closed', 'WebSocket: ' + why + ', reconnecting');
        scheduleReconnect();
      } else {
        setPill($('ws-status'), 'idle', 'WebSocket: not connected');
      }
    });
  }

  function scheduleReconnect() {
    if (conn.timer) return;
    const delay = Math.min(5000, 250 * Math.pow(2, conn.retry++));
    conn.timer = setTimeout(() => { conn.timer = null; if (wantConnection()) connect(); }, delay);
  }

  /** Sends a frame with a fresh `ref`; resolves to the `ok` or `error` answer. */
  function request(frame) {
    return new Promise((resolve) => {
      if (!conn.sock || !conn.open) {
        resolve({ op: 'error', error: { code: 'NotConnected', message: 'the WebSocket is not connected' } });
        return;
      }
      const ref = conn.nextRef++;
      const timer = setTimeout(() => {
        conn.pending.delete(ref);
        resolve({ op: 'error', ref, error: { code: 'NoAnswer', message: 'no answer in ' + FRAME_ANSWER_MS / 1000 + ' s' } });
      }, FRAME_ANSWER_MS);
      conn.pending.set(ref, { resolve, timer });
      conn.sock.send(JSON.stringify(Object.assign({}, frame, { ref })));
    });
  }

  function onFrame(f) {
    if ((f.op === 'ok' || f.op === 'error') && f.ref !== undefined && conn.pending.has(f.ref)) {
      const p = conn.pending.get(f.ref);
      conn.pending.delete(f.ref);
      clearTimeout(p.timer);
      p.resolve(f);
      return;
    }
    if (f.op === 'message') {
      const w = watches.get(f.sub);
      if (w) addMessage(w, f);
      return;
    }
    if (f.op === 'end') {
      const w = watches.get(f.sub);
      if (w) {
        w.active = false;
        setWatchState(w, 'ended', 'ended: ' + (f.reason || 'end of stream'));
      }
      return;
    }
    if (f.op === 'error') {
      showError('WebSocket', f.error || {});
      return;
    }
  }

  function prefetch() {
    const n = Number($('watch-prefetch').value);
    return Number.isInteger(n) && n > 0 ? n : 10;
  }

  async function subscribe(w) {
    setWatchState(w, 'subscribing', 'subscribing…');
    const frame = { op: 'subscribe', sub: w.sub, prefetch: w.prefetch };
    frame[w.kind] = w.name;
    if (w.kind === 'topic' && w.resume) frame.resume = w.resume;
    const a = await request(frame);
    if (!watches.has(w.sub) || !w.active) return;
    if (a.op === 'ok') {
      if (w.kind === 'topic' && a.resume) {
        const resumed = !!frame.resume;
        w.resume = a.resume;
        setText(w.els.resume, 'resume token ' + a.resume);
        w.els.resume.title = a.resume;
        if (resumed) w.resumes++;
        setText(w.els.resumes, w.resumes ? 'resumed ' + w.resumes + '×' : '');
      }
      w.resumeTries = 0;
      setWatchState(w, 'live', 'live');
      return;
    }
    const err = a.error || {};
    if (err.code === 'ConnectionLost' || err.code === 'NotConnected') return;   // retried on reconnect
    if (err.code === 'ResumeExpired' && w.resume && w.resumeTries < 2) {
      // The server also answers ResumeExpired while it still holds the old
      // connection's subscription (it may not have seen the close yet): try
      // again shortly before giving the token up.
      w.resumeTries++;
      setWatchState(w, 'reconnecting', 'resuming…');
      const sock = conn.sock;
      setTimeout(() => { if (w.active && conn.open && conn.sock === sock) subscribe(w); }, 700);
      return;
    }
    if (err.code === 'ResumeExpired') {
      w.resumeTries = 0;
      showError('watch topic ' + w.name, {
        code: 'ResumeExpired',
        message: 'the resume window passed: messages published meanwhile may be missing; subscribed afresh',
      });
      w.resume = null;
      subscribe(w);
      return;
    }
    w.active = false;
    setWatchState(w, 'error', (err.code || 'error') + ': ' + (err.message || ''));
    showError('watch ' + w.kind + ' ' + w.name, err);
  }

  function addWatch(kind, name, pf) {
    for (const w of watches.values()) {
      if (w.active && w.kind === kind && w.name === name) {
        w.els.card.scrollIntoView({ block: 'nearest' });
        return w;
      }
    }
    const sub = 's' + nextSub++;
    const w = {
      sub, kind, name, prefetch: pf, active: true, resume: null, resumes: 0, resumeTries: 0,
      rows: new Map(), received: 0, acked: 0, nacked: 0, els: {},
    };
    const state = h('span', { cls: 'pill', testid: 'watch-state' });
    const counts = h('span', { cls: 'muted', testid: 'watch-counts' });
    const resume = h('span', { cls: 'muted token', testid: 'resume-token' });
    const resumes = h('span', { cls: 'muted', testid: 'resume-count' });
    const close = h('button', { cls: 'small', text: 'stop', testid: 'watch-stop', attrs: { type: 'button' } });
    const tbody = h('tbody');
    const table = h('table', { cls: 'messages' },
      h('thead', null, h('tr', null,
        h('th', { cls: 'num', text: 'seq' }), h('th', { text: 'id' }), h('th', { text: 'body' }),
        h('th', { text: 'attributes' }), h('th', { cls: 'num', text: 'receives', title: 'receive count' }),
        h('th', { text: 'received' }), h('th', { text: '' }), h('th', { text: 'result' }))),
      tbody);
    const empty = h('p', { cls: 'empty', text: 'Waiting for messages…', testid: 'watch-empty' });
    const card = h('div', { cls: 'watch', testid: 'watch', data: { kind, name, sub } },
      h('div', { cls: 'watch-head' },
        h('span', { cls: 'watch-kind', text: kind }),
        h('strong', { cls: 'watch-name', text: name }),
        h('span', { cls: 'muted', text: 'prefetch ' + pf }),
        state, counts, resumes, h('span', { cls: 'spacer' }), resume, close),
      h('div', { cls: 'table-wrap' }, table), empty);
    w.els = { card, state, counts, resume, resumes, tbody, table, empty, close };
    table.hidden = true;
    close.addEventListener('click', () => stopWatch(w));
    $('watches').prepend(card);
    watches.set(sub, w);
    updateCounts(w);
    if (conn.open) subscribe(w);
    else {
      setWatchState(w, 'connecting', 'connecting…');
      connect();
    }
    return w;
  }

  async function stopWatch(w) {
    if (!w.active) {
      watches.delete(w.sub);
      w.els.card.remove();
      return;
    }
    w.active = false;
    if (conn.open) {
      const a = await request({ op: 'unsubscribe', sub: w.sub });
      if (a.op === 'error' && a.error && a.error.code !== 'SubscriptionNotFound') {
        showError('stop watching ' + w.name, a.error);
      }
    }
    for (const row of w.rows.values()) {
      if (!row.settled) settle(row, 'returned', 'back in the queue (stopped)');
    }
    setWatchState(w, 'stopped', 'stopped');
    w.els.close.textContent = 'remove';
    if (!wantConnection() && conn.sock) conn.sock.close(1000, 'no watches');
  }

  function setWatchState(w, state, text) {
    w.els.card.dataset.state = state;
    setPill(w.els.state, state, text);
  }

  function updateCounts(w) {
    setText(w.els.counts, w.received + ' received · ' + w.acked + ' acked · ' + w.nacked + ' nacked');
  }

  function shortId(id) {
    return id.length > 12 ? id.slice(0, 8) + '…' : id;
  }

  function addMessage(w, m) {
    w.received++;
    const ackBtn = h('button', { cls: 'small ack', text: 'ack', testid: 'ack', attrs: { type: 'button' } });
    const nackBtn = h('button', { cls: 'small nack', text: 'nack', testid: 'nack', attrs: { type: 'button' } });
    const result = h('td', { testid: 'msg-result', cls: 'result-cell' });
    const attrs = m.attributes || {};
    const attrCell = h('td', { cls: 'attrs', testid: 'msg-attrs' },
      ...Object.keys(attrs).map((k) => h('span', { cls: 'chip', text: k + '=' + attrs[k] })));
    const extra = [];
    if (m.poison) extra.push(badge('poison', 'poison', 'badge-poison'));
    if (m.dead_letter_source) extra.push(badge('from ' + m.dead_letter_source, 'dlq'));
    if (m.topic && w.kind === 'queue') extra.push(badge('via ' + m.topic, 'via'));
    if (m.group_id) extra.push(badge('group ' + m.group_id, 'fifo'));
    const body = m.body_encoding === 'base64' ? '[base64] ' + m.body : m.body;
    const tr = h('tr', {
      testid: 'msg', data: { msgId: m.id, sub: w.sub, state: 'pending' },
    },
      h('td', { cls: 'num', text: m.sequence }),
      h('td', { cls: 'mono', text: shortId(m.id), title: m.id }),
      h('td', { cls: 'body', testid: 'msg-body' }, h('span', { text: body }), ...extra),
      attrCell,
      h('td', { cls: 'num', text: m.receive_count, testid: 'msg-receives' }),
      h('td', { cls: 'muted', text: clock() }),
      h('td', { cls: 'actions' }, ackBtn, nackBtn),
      result);
    const row = { tr, receipt: m.receipt, settled: false, ackBtn, nackBtn, result, w };
    ackBtn.addEventListener('click', () => settleOnServer(row, 'ack'));
    nackBtn.addEventListener('click', () => settleOnServer(row, 'nack'));
    w.rows.set(tr, row);
    w.els.tbody.prepend(tr);
    while (w.els.tbody.children.length > MAX_ROWS_PER_WATCH) {
      const last = w.els.tbody.lastElementChild;
      w.rows.delete(last);
      last.remove();
    }
    w.els.table.hidden = false;
    w.els.empty.hidden = true;
    updateCounts(w);
  }

  function settle(row, state, text) {
    row.settled = true;
    row.ackBtn.disabled = true;
    row.nackBtn.disabled = true;
    row.tr.dataset.state = state;
    row.result.textContent = text;
  }

  async function settleOnServer(row, op) {
    if (row.settled) return;
    row.ackBtn.disabled = true;
    row.nackBtn.disabled = true;
    row.result.textContent = op === 'ack' ? 'acking…' : 'nacking…';
    const a = await request({ op, receipts: [row.receipt] });
    let err = null;
    if (a.op === 'ok') {
      const r = (a.results || [])[0];
      if (!r || !r.ok) err = (r && r.error) || { code: 'NoResult', message: 'no result for the receipt' };
    } else {
      err = a.error || { code: 'Error', message: 'unknown error' };
    }
    if (err) {
      if (err.code === 'ConnectionLost' || err.code === 'NotConnected') {
        if (!row.settled) settle(row, 'returned', 'back in the queue (connection lost)');
        return;
      }
      settle(row, 'failed', op + ' failed: ' + (err.code || 'Error') + (err.message ? ' (' + err.message + ')' : ''));
      showError(op, err);
      return;
    }
    if (op === 'ack') row.w.acked++;
    else row.w.nacked++;
    updateCounts(row.w);
    settle(row, op === 'ack' ? 'acked' : 'nacked', op === 'ack' ? 'acked' : 'nacked');
    poll.now();
  }

  $('watch-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = $('watch-name').value.trim();
    if (name) addWatch($('watch-kind').value, name, prefetch());
  });
  $('watch-kind').addEventListener('change', () => {
    $('watch-name').setAttribute('list', $('watch-kind').value === 'topic' ? 'names-topics' : 'names-queues');
  });

  $('ws-reconnect').addEventListener('click', () => {
    conn.retry = 0;
    if (conn.sock) conn.sock.close(4000, 'reconnect asked');
    else if (wantConnection()) connect();
  });

  // An extra refresh soon after a change, on top of the 1 s poll.
  let soon = null;
  poll.now = () => {
    if (soon) return;
    soon = setTimeout(() => {
      soon = null;
      refresh().catch(() => { /* the regular poll reports errors */ });
    }, 150);
  };

  poll();
})();
