//! What the client commands print: JSON lines on stdout, one JSON value per
//! line, flushed at once so a pipe (`| jq`, `| head -1`) sees each line as it
//! happens. Human-facing warnings and errors go to stderr, never here.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::Value;

/// Why a line could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The reader went away (`| head -1`). Not a failure of the command: it
    /// stops quietly, and anything not printed is not acked.
    #[error("stdout was closed")]
    Closed,
    #[error("cannot write to stdout: {0}")]
    Io(io::Error),
}

/// A JSON-lines writer; generic so tests can write into a `Vec<u8>`.
pub struct JsonLines<W> {
    out: W,
}

impl JsonLines<io::Stdout> {
    pub fn stdout() -> Self {
        Self { out: io::stdout() }
    }
}

impl<W: Write> JsonLines<W> {
    #[cfg(test)]
    pub fn new(out: W) -> Self {
        Self { out }
    }

    /// Writes `value` as one line and flushes it.
    pub fn emit<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), OutputError> {
        // Serialising into a buffer first keeps a line whole: one write, so a
        // failure never leaves half a JSON object on the pipe.
        let mut line = serde_json::to_vec(value)
            .map_err(|e| OutputError::Io(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        line.push(b'\n');
        self.out
            .write_all(&line)
            .and_then(|()| self.out.flush())
            .map_err(|e| match e.kind() {
                io::ErrorKind::BrokenPipe => OutputError::Closed,
                _ => OutputError::Io(e),
            })
    }

    /// Prints a server answer to a command that returns one thing. An empty
    /// answer (e.g. `204 No Content`) prints `{"ok": true}`, so every command
    /// prints exactly one line on success.
    pub fn emit_answer(&mut self, answer: &Value) -> Result<(), OutputError> {
        match answer {
            Value::Null => self.emit(&serde_json::json!({ "ok": true })),
            other => self.emit(other),
        }
    }

    /// Prints a list answer one item per line. The contract does not fix the
    /// list shape, so this accepts a bare array or an object holding the array
    /// under `key` (`{"topics": [..]}`); anything else is printed whole. Bare
    /// names become `{"name": ..}` so every line is an object.
    pub fn emit_list(&mut self, answer: Value, key: &str) -> Result<(), OutputError> {
        for item in list_items(answer, key) {
            match item {
                Value::String(name) => self.emit(&serde_json::json!({ "name": name }))?,
                other => self.emit(&other)?,
            }
        }
        Ok(())
    }

    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }
}

fn list_items(answer: Value, key: &str) -> Vec<Value> {
    match answer {
        Value::Array(items) => items,
        Value::Object(mut map) => match map.remove(key) {
            Some(Value::Array(items)) => items,
            Some(other) => {
                map.insert(key.to_string(), other);
                vec![Value::Object(map)]
            }
            None => vec![Value::Object(map)],
        },
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn printed(f: impl FnOnce(&mut JsonLines<Vec<u8>>)) -> String {
        let mut out = JsonLines::new(Vec::new());
        f(&mut out);
        String::from_utf8(out.into_inner()).expect("utf-8 output")
    }

    #[test]
    fn lists_print_one_object_per_line_whatever_the_shape() {
        let keyed = printed(|o| {
            o.emit_list(json!({"topics": [{"name": "a"}, {"name": "b"}]}), "topics")
                .expect("written")
        });
        assert_eq!(keyed, "{\"name\":\"a\"}\n{\"name\":\"b\"}\n");
        let bare = printed(|o| o.emit_list(json!(["a", "b"]), "topics").expect("written"));
        assert_eq!(bare, keyed);
        let empty = printed(|o| {
            o.emit_list(json!({"topics": []}), "topics")
                .expect("written")
        });
        assert_eq!(empty, "");
    }

    #[test]
    fn an_empty_answer_prints_ok() {
        let s = printed(|o| o.emit_answer(&Value::Null).expect("written"));
        assert_eq!(s, "{\"ok\":true}\n");
    }

    #[test]
    fn a_closed_pipe_is_reported_as_closed() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = JsonLines::new(Closed);
        assert!(matches!(out.emit(&json!({})), Err(OutputError::Closed)));
    }
}
