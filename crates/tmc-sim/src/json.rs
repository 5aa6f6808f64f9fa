//! Deterministic, compact-but-readable JSON: objects and arrays that fit in [`WIDTH`] columns are
//! written on one line, larger ones one member per line. Field order is the serialization order.

use serde::Serialize;

/// Containers whose one-line form (plus indentation) fits in this many columns stay on one line.
pub const WIDTH: usize = 100;

/// Serializes `value` as JSON in the layout described in the module docs, ending with a newline.
pub fn to_json<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let compact = serde_json::to_string(value)?;
    let mut parser = Parser { s: compact.as_bytes(), i: 0 };
    let tree = parser.value();
    let mut out = String::with_capacity(compact.len() * 2);
    print(&tree, &compact, 0, &mut out);
    out.push('\n');
    Ok(out)
}

/// A JSON value as spans of the compact text.
enum Node {
    Scalar(usize, usize),
    Array(Vec<Node>),
    Object(Vec<((usize, usize), Node)>),
}

/// A parser for the (valid) compact output of `serde_json`.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn value(&mut self) -> Node {
        match self.s.get(self.i) {
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                while self.s.get(self.i).is_some_and(|&c| c != b']') {
                    items.push(self.value());
                    if self.s.get(self.i) == Some(&b',') {
                        self.i += 1;
                    }
                }
                self.i += 1;
                Node::Array(items)
            }
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                while self.s.get(self.i).is_some_and(|&c| c != b'}') {
                    let key = self.string();
                    self.i += 1; // ':'
                    members.push((key, self.value()));
                    if self.s.get(self.i) == Some(&b',') {
                        self.i += 1;
                    }
                }
                self.i += 1;
                Node::Object(members)
            }
            Some(b'"') => {
                let (a, b) = self.string();
                Node::Scalar(a, b)
            }
            _ => {
                let start = self.i;
                while self.s.get(self.i).is_some_and(|&c| !matches!(c, b',' | b']' | b'}')) {
                    self.i += 1;
                }
                Node::Scalar(start, self.i)
            }
        }
    }

    /// A string token, quotes included.
    fn string(&mut self) -> (usize, usize) {
        let start = self.i;
        self.i += 1;
        while let Some(&c) = self.s.get(self.i) {
            self.i += 1;
            match c {
                b'\\' => self.i += 1,
                b'"' => break,
                _ => {}
            }
        }
        (start, self.i)
    }
}

fn inline(node: &Node, text: &str, out: &mut String) {
    match node {
        Node::Scalar(a, b) => out.push_str(&text[*a..*b]),
        Node::Array(items) => {
            out.push('[');
            for (k, item) in items.iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                inline(item, text, out);
            }
            out.push(']');
        }
        Node::Object(members) => {
            out.push('{');
            for (k, ((a, b), value)) in members.iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                out.push_str(&text[*a..*b]);
                out.push_str(": ");
                inline(value, text, out);
            }
            out.push('}');
        }
    }
}

/// Prints `node` at `indent` (in levels of two spaces); the caller has already written the
/// indentation and any key in front of it, `used` columns in all.
fn print(node: &Node, text: &str, used: usize, out: &mut String) {
    let mut flat = String::new();
    inline(node, text, &mut flat);
    if flat.len() + used <= WIDTH || matches!(node, Node::Scalar(..)) {
        out.push_str(&flat);
        return;
    }
    let depth = current_indent(out);
    let pad = " ".repeat(depth + 2);
    match node {
        Node::Scalar(..) => {}
        Node::Array(items) => {
            out.push('[');
            for (k, item) in items.iter().enumerate() {
                out.push_str(if k > 0 { ",\n" } else { "\n" });
                out.push_str(&pad);
                print(item, text, pad.len(), out);
            }
            out.push('\n');
            out.push_str(&" ".repeat(depth));
            out.push(']');
        }
        Node::Object(members) => {
            out.push('{');
            for (k, ((a, b), value)) in members.iter().enumerate() {
                out.push_str(if k > 0 { ",\n" } else { "\n" });
                out.push_str(&pad);
                out.push_str(&text[*a..*b]);
                out.push_str(": ");
                print(value, text, pad.len() + (b - a) + 2, out);
            }
            out.push('\n');
            out.push_str(&" ".repeat(depth));
            out.push('}');
        }
    }
}

/// The indentation of the line being written.
fn current_indent(out: &str) -> usize {
    let line = out.rsplit('\n').next().unwrap_or(out);
    line.len() - line.trim_start_matches(' ').len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_containers_stay_on_one_line_and_order_is_kept() {
        #[derive(Serialize)]
        struct T {
            zeta: u32,
            alpha: Vec<u32>,
            long: Vec<String>,
            text: String,
        }
        let t = T {
            zeta: 1,
            alpha: vec![1, 2],
            long: (0..20).map(|i| format!("item-{i}")).collect(),
            text: "a \"quoted\", [bracketed] {text}".into(),
        };
        let out = to_json(&t).unwrap_or_else(|e| panic!("{e}"));
        assert!(out.starts_with("{\n  \"zeta\": 1,\n  \"alpha\": [1, 2],\n  \"long\": [\n    \"item-0\",\n"), "{out}");
        assert!(out.ends_with("  \"text\": \"a \\\"quoted\\\", [bracketed] {text}\"\n}\n"), "{out}");
        let back: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back["long"][19], "item-19");
        assert_eq!(to_json(&Vec::<u32>::new()).ok().as_deref(), Some("[]\n"));
    }
}
