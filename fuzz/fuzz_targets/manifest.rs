//! The controller-manager's static-pod manifest, edited as the update does: signing flags moved to the
//! new CA and back. No panic; the edit is idempotent, moving to one CA and then another equals moving to
//! the second directly, every other line is kept, and a manifest that YAML reads as the editor does
//! stays YAML with the flags in its command list.
#![no_main]

use dc_agent::manifest::set_signing_files;
use libfuzzer_sys::fuzz_target;
use serde_norway::Value;

const CERT: &str = "/etc/kubernetes/pki/ca_new.crt";
const KEY: &str = "/etc/kubernetes/pki/ca_new.key";
const OLD_CERT: &str = "/etc/kubernetes/pki/ca.crt";
const OLD_KEY: &str = "/etc/kubernetes/pki/ca.key";
const ENTRY: &str = "kube-controller-manager";
const FLAGS: [&str; 2] = [
    "--cluster-signing-cert-file=",
    "--cluster-signing-key-file=",
];

/// The lines without the flags, their endings aside: a last line ended by a bare `\r` gains the `\n`
/// the added lines need, which YAML reads as the same one line break.
fn other_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !FLAGS.iter().any(|f| l.contains(f)))
        .collect()
}

/// The text of a one-line block-list item, `- "x"` read as `x`.
fn line_item(line: &str) -> &str {
    let item = line.trim();
    let item = item.strip_prefix("- ").unwrap_or(item).trim();
    for quote in ['"', '\''] {
        if let Some(inner) = item
            .strip_prefix(quote)
            .and_then(|rest| rest.strip_suffix(quote))
        {
            return inner;
        }
    }
    item
}

/// Every string that is an element of a sequence (a container's `command` or `args`).
fn elements(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Mapping(map) => map.values().for_each(|v| elements(v, out)),
        Value::Sequence(items) => items.iter().for_each(|v| {
            if let Some(s) = v.as_str() {
                out.push(s.to_owned());
            }
            elements(v, out);
        }),
        Value::Tagged(t) => elements(&t.value, out),
        _ => {}
    }
}

fuzz_target!(|manifest: &str| {
    let Ok(edited) = set_signing_files(manifest, CERT, KEY) else {
        return;
    };
    assert!(
        edited.contains(&format!("{}{CERT}", FLAGS[0])),
        "{edited:?}"
    );
    assert!(edited.contains(&format!("{}{KEY}", FLAGS[1])), "{edited:?}");
    assert_eq!(
        other_lines(&edited),
        other_lines(manifest),
        "other lines changed"
    );
    assert_eq!(
        set_signing_files(&edited, CERT, KEY).unwrap(),
        edited,
        "not idempotent"
    );
    let back = set_signing_files(&edited, OLD_CERT, OLD_KEY).unwrap();
    assert_eq!(
        set_signing_files(&back, CERT, KEY).unwrap(),
        edited,
        "there and back again differs"
    );

    // Where YAML and the line editor see the same manifest (it is YAML, its command list holds the
    // entry, and every line naming the entry or a flag is a one-line list item YAML reads as that line),
    // the edit keeps it
    // YAML and puts both flags in the list. A line editor cannot promise more: inside a multi-line
    // quoted scalar, say, a line that looks like an item is text.
    let Ok(before) = serde_norway::from_str::<Value>(manifest) else {
        return;
    };
    let mut had = Vec::new();
    elements(&before, &mut had);
    let agree = [FLAGS[0], FLAGS[1], ENTRY].iter().all(|needle| {
        let mut items: Vec<&str> = had
            .iter()
            .filter(|s| s.contains(needle))
            .map(String::as_str)
            .collect();
        let mut lines: Vec<&str> = manifest
            .lines()
            .filter(|l| l.contains(needle))
            .filter(|l| l.trim_start().starts_with("- "))
            .map(line_item)
            // `- name: kube-controller-manager` is a mapping, not the entry; a flag's line counts
            // whatever YAML makes of it.
            .filter(|item| *needle != ENTRY || !(item.contains(": ") || item.ends_with(':')))
            .collect();
        items.sort_unstable();
        lines.sort_unstable();
        items == lines
    });
    if !agree || !had.iter().any(|s| s == ENTRY) {
        return;
    }
    let after: Value = serde_norway::from_str(&edited).expect("the edited manifest is YAML");
    let mut has = Vec::new();
    elements(&after, &mut has);
    for wanted in [format!("{}{CERT}", FLAGS[0]), format!("{}{KEY}", FLAGS[1])] {
        assert!(
            has.contains(&wanted),
            "{wanted} is not in the list: {edited:?}"
        );
    }
});
