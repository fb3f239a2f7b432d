//! Printing a parsed [`Listing`] back: the proof that it holds everything `-L` printed.

use std::fmt::Write as _;

use super::{ChainKind, Count, Field, Listing, Unit};

fn unit(u: Unit) -> &'static str {
    match u {
        Unit::One => "",
        Unit::K => "K",
        Unit::M => "M",
        Unit::G => "G",
        Unit::T => "T",
    }
}

/// A counter in its column: `%8llu ` with `-x`, else `%5llu ` or `%4lluK `.
fn push_count(out: &mut String, c: Count, exact: bool) {
    let digits = c.value.to_string();
    let width = if exact {
        8
    } else if c.unit == Unit::One {
        5
    } else {
        4
    };
    for _ in digits.len()..width {
        out.push(' ');
    }
    out.push_str(&digits);
    out.push_str(unit(c.unit));
    out.push(' ');
}

fn push_field(out: &mut String, f: &Field, width: usize) {
    let start = out.len();
    if f.negated {
        out.push('!');
    }
    out.push_str(&f.value);
    for _ in out.len() - start..width {
        out.push(' ');
    }
}

impl Listing {
    /// The listing printed again as iptables printed it: byte for byte for every
    /// listing iptables wrote (the tests check all captured ones), since the parse keeps
    /// every field, the counters' units and the match text.
    ///
    /// ```
    /// let text = "Chain INPUT (policy DROP)\n\
    ///             target     prot opt source               destination         \n\
    ///             ACCEPT     tcp  --  anywhere             anywhere             tcp dpt:ssh\n";
    /// assert_eq!(portcullis_syntax::parse_listing(text)?.to_text(), text);
    /// # Ok::<(), portcullis_syntax::ParseError>(())
    /// ```
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut first = true;
        for c in &self.chains {
            if let Some(h) = &c.header {
                if !first {
                    out.push('\n');
                }
                first = false;
                let _ = write!(out, "Chain {} (", h.name);
                match &h.kind {
                    ChainKind::Builtin { policy, counters } => {
                        let _ = write!(out, "policy {policy}");
                        if let Some((p, b)) = counters {
                            let _ = write!(
                                out,
                                " {}{} packets, {}{} bytes",
                                p.value,
                                unit(p.unit),
                                b.value,
                                unit(b.unit)
                            );
                        }
                    }
                    ChainKind::User { references } => {
                        let _ = write!(out, "{references} references");
                    }
                    ChainKind::RefsError => out.push_str("ERROR obtaining refs"),
                }
                out.push_str(")\n");
            }
            let cols = c.columns;
            if c.column_header {
                if cols.num {
                    out.push_str("num  ");
                }
                if cols.counters {
                    out.push_str(if cols.exact { "    pkts      bytes " } else { " pkts bytes " });
                }
                out.push_str("target     prot opt");
                if cols.via {
                    out.push_str(" in     out    ");
                }
                out.push_str(" source               destination         \n");
            }
            for r in &c.rules {
                if let Some(n) = r.num {
                    let _ = write!(out, "{n:<4} ");
                }
                if let (Some(p), Some(b)) = (r.packets, r.bytes) {
                    push_count(&mut out, p, cols.exact);
                    push_count(&mut out, b, cols.exact);
                }
                let start = out.len();
                out.push_str(&r.target);
                for _ in out.len() - start..9 {
                    out.push(' ');
                }
                out.push(' ');
                if !r.prot.negated {
                    out.push(' ');
                }
                push_field(&mut out, &r.prot, 4 + usize::from(r.prot.negated));
                out.push(' ');
                if r.opt.is_empty() {
                    out.push_str("   ");
                } else {
                    out.push_str(&r.opt);
                    out.push(' ');
                }
                if let (Some(i), Some(o)) = (&r.in_iface, &r.out_iface) {
                    out.push(' ');
                    push_field(&mut out, i, 6);
                    out.push(' ');
                    push_field(&mut out, o, 6);
                    out.push(' ');
                }
                for a in [&r.source, &r.destination] {
                    if !a.negated {
                        out.push(' ');
                    }
                    push_field(&mut out, a, 19 + usize::from(a.negated));
                    out.push(' ');
                }
                if r.goto {
                    out.push_str("[goto] ");
                }
                out.push_str(&r.text);
                out.push('\n');
            }
        }
        out
    }
}
