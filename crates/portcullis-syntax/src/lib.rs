//! Read and write the iptables text formats: iptables-save / iptables-restore files,
//! `iptables -S` output, single rule lines and shell scripts of iptables commands.
//!
//! This crate turns text into the model of [`portcullis_rules`] and back. It knows nothing
//! about processes, sockets or the kernel. The parser is faithful to iptables itself: the
//! tokenizer is iptables-restore's (`"` quotes only, backslash escapes inside quotes only),
//! every restore command is understood, and any unknown match or target module is kept as
//! written. Errors carry a line and a column and render like compiler diagnostics.
//!
//! ```
//! use portcullis_rules::{Backend, canonicalize};
//! use portcullis_syntax::{parse_save, render_save, SaveOptions};
//!
//! let text = "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n";
//! let rs = canonicalize(&parse_save(text)?, Backend::Nft);
//! let out = render_save(&rs, SaveOptions::default());
//! assert!(out.contains("-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n"));
//! # Ok::<(), portcullis_syntax::ParseError>(())
//! ```
#![deny(missing_docs)]

mod args;
mod check;
mod error;
mod input;
mod json;
mod listing;
mod render;
mod save;
mod script;
mod shape;
mod token;

pub use crate::{
    check::{SaveSummary, validate_save, validate_save_as, validate_save_bytes},
    error::{ParseError, ParseErrorKind},
    input::{Format, Input, detect_format, read_rulesets},
    json::{JSON_FORMAT, JSON_VERSION, ruleset_from_json, ruleset_to_json},
    listing::{
        ChainHeader, ChainKind, Columns, Conversion, Count, Field, ListFlags, ListStyle,
        ListedChain, ListedRule, Listing, ListingWarning, ListingWriter, Unit, listing_to_ruleset,
        parse_listing, render_listing,
    },
    render::{SaveOptions, render_rule, render_rules_spec, render_save},
    save::{
        Script, ScriptBlock, parse_restore, parse_rule_line, parse_rules_spec, parse_save,
        parse_save_as,
    },
    script::{ScriptOutcome, parse_script},
    token::{Token, TokenNotes, quote, quote_always, tokenize},
};
