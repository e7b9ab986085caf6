//! The Server-Sent Events framing of the controller's event stream (`GET
//! /v1.0/sw-update-strategy/events`, docs/rest-api.md): the controller encodes with [`encode`]; the
//! CLI's `--watch`, the fleet bench and the tests decode with [`Parser`]. One crate without
//! dependencies, so the CLI gets the decoder without the controller.

/// One event: its `id:`, `event:` name and `data:` text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub name: String,
    pub data: String,
}

/// A keep-alive comment: proxies that cut idle connections see traffic, readers skip it.
pub const KEEP_ALIVE: &str = ": keep-alive\n\n";

/// The text of one event. `data` must be one line (serde_json's output is: it escapes newlines
/// inside strings).
pub fn encode(id: &str, name: &str, data: &str) -> String {
    debug_assert!(!data.contains('\n'), "one line of data");
    format!("id: {id}\nevent: {name}\ndata: {data}\n\n")
}

/// Cuts a stream's bytes into events, whatever the chunks' boundaries (mid-line, mid-UTF-8).
#[derive(Default)]
pub struct Parser {
    buf: Vec<u8>,
    /// How far `buf` is known to hold no blank line: a snapshot of thousands of subclouds arrives in
    /// hundreds of chunks, and rescanning it from the start for each would be quadratic.
    scanned: usize,
    /// The last byte seen was a CR: a LF right after it ends the same line.
    after_cr: bool,
}

impl Parser {
    /// The events completed by `bytes` (a blank line ends one). Comments (keep-alives) and fields
    /// other than `id`, `event` and `data` are skipped. Lines end with LF, CRLF or CR, as the
    /// specification allows.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Event> {
        for &b in bytes {
            match b {
                b'\r' => self.buf.push(b'\n'),
                b'\n' if self.after_cr => {}
                _ => self.buf.push(b),
            }
            self.after_cr = b == b'\r';
        }
        let mut events = Vec::new();
        while let Some(at) = self.buf[self.scanned..]
            .windows(2)
            .position(|w| w == b"\n\n")
        {
            let end = self.scanned + at + 2;
            let block: Vec<u8> = self.buf.drain(..end).collect();
            self.scanned = 0;
            if let Some(event) = parse_block(&String::from_utf8_lossy(&block)) {
                events.push(event);
            }
        }
        // The last byte may be the first of a blank line's two.
        self.scanned = self.buf.len().saturating_sub(1);
        events
    }
}

/// One event's lines, or `None` for a block without data (a comment).
fn parse_block(text: &str) -> Option<Event> {
    let mut event = Event {
        id: None,
        name: "message".to_owned(),
        data: String::new(),
    };
    let mut any = false;
    for line in text.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => event.id = Some(value.to_owned()),
            "event" => event.name = value.to_owned(),
            "data" => {
                if any {
                    event.data.push('\n');
                }
                event.data.push_str(value);
                any = true;
            }
            _ => {}
        }
    }
    any.then_some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_cut_at_blank_lines_whatever_the_chunks() {
        let text = "id: e-1\nevent: step\ndata: {\"id\": 2}\n\n: keep-alive\n\nid: e-2\r\nevent: strategy\r\ndata: null\r\n\r\n";
        let mut whole = Parser::default();
        let events = whole.push(text.as_bytes());
        assert_eq!(
            events,
            [
                Event {
                    id: Some("e-1".into()),
                    name: "step".into(),
                    data: "{\"id\": 2}".into()
                },
                Event {
                    id: Some("e-2".into()),
                    name: "strategy".into(),
                    data: "null".into()
                }
            ]
        );
        let mut bytewise = Parser::default();
        let again: Vec<Event> = text
            .as_bytes()
            .chunks(1)
            .flat_map(|b| bytewise.push(b))
            .collect();
        assert_eq!(again, events);
    }

    #[test]
    fn lone_cr_line_ends_multi_line_data_and_split_characters() {
        let text = "id: e-1\revent: step\rdata: {\"details\":\r\ndata: \"caf\u{e9} \u{2713}\"}\r\r";
        let expected = [Event {
            id: Some("e-1".into()),
            name: "step".into(),
            data: "{\"details\":\n\"caf\u{e9} \u{2713}\"}".into(),
        }];
        assert_eq!(Parser::default().push(text.as_bytes()), expected);
        let mut bytewise = Parser::default();
        let again: Vec<Event> = text
            .as_bytes()
            .chunks(1)
            .flat_map(|b| bytewise.push(b))
            .collect();
        assert_eq!(again, expected);
    }

    #[test]
    fn what_is_encoded_decodes_to_itself() {
        let text = encode("e-7", "step", "{\"state\":\"complete\"}");
        let events = Parser::default().push(text.as_bytes());
        assert_eq!(
            events,
            [Event {
                id: Some("e-7".into()),
                name: "step".into(),
                data: "{\"state\":\"complete\"}".into()
            }]
        );
        assert_eq!(Parser::default().push(KEEP_ALIVE.as_bytes()), []);
    }
}
