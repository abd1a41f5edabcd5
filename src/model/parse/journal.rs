//! One line of `journalctl -o json`: an object whose values are strings, arrays of
//! numbers (fields that are not valid UTF-8), arrays of those (repeated fields), or null.

use serde_json::Value;

/// What `history` needs of a journal entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `__REALTIME_TIMESTAMP` in seconds.
    pub unix: f64,
    pub ident: Option<String>,
    pub message: String,
    pub transport: Option<String>,
    pub boot_id: Option<String>,
}

/// A field's text: a string, bytes (lossy UTF-8), or the first of repeated values.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) if a.iter().all(Value::is_u64) => Some(
            String::from_utf8_lossy(
                &a.iter()
                    .filter_map(|b| b.as_u64().map(|b| b as u8))
                    .collect::<Vec<u8>>(),
            )
            .into_owned(),
        ),
        Value::Array(a) => a.iter().find_map(text),
        _ => None,
    }
}

/// Parse one line; `None` for anything that is not an entry with a message and a time.
pub fn entry(line: &[u8]) -> Option<Entry> {
    let v: Value = serde_json::from_slice(line).ok()?;
    let o = v.as_object()?;
    let unix = text(o.get("__REALTIME_TIMESTAMP")?)?.parse::<u64>().ok()? as f64 / 1e6;
    let message = text(o.get("MESSAGE")?)?;
    let transport = o.get("_TRANSPORT").and_then(text);
    let ident = o
        .get("SYSLOG_IDENTIFIER")
        .and_then(text)
        .or_else(|| (transport.as_deref() == Some("kernel")).then(|| "kernel".to_owned()));
    Some(Entry {
        unix,
        ident,
        message,
        transport,
        boot_id: o.get("_BOOT_ID").and_then(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_bytes_arrays_and_nulls() {
        let e = entry(br#"{"__REALTIME_TIMESTAMP":"1700000000123456","MESSAGE":"hi","SYSLOG_IDENTIFIER":"systemd-oomd","_TRANSPORT":"journal"}"#).unwrap();
        assert_eq!(e.message, "hi");
        assert_eq!(e.ident.as_deref(), Some("systemd-oomd"));
        assert!((e.unix - 1700000000.123456).abs() < 1e-6);
        let e =
            entry(br#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":[104,255,105],"_TRANSPORT":"kernel"}"#)
                .unwrap();
        assert_eq!(e.message, "h\u{fffd}i");
        assert_eq!(e.ident.as_deref(), Some("kernel"));
        let e = entry(
            br#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":["a","b"],"SYSLOG_IDENTIFIER":["x","y"]}"#,
        )
        .unwrap();
        assert_eq!((e.message.as_str(), e.ident.as_deref()), ("a", Some("x")));
        assert!(entry(br#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":null}"#).is_none());
        assert!(entry(b"not json").is_none());
    }
}
