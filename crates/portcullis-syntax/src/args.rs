//! One iptables command line, already tokenized, into a [`Command`]: what `iptables`
//! does with its argv and what iptables-restore does with each line of a table block.

use std::borrow::Cow;
use std::str::FromStr;

use portcullis_rules::{
    Action, Address, ChainName, Command, Counters, Family, Interface, Match, Negatable, Opt,
    Policy, Protocol, Rule, RuleSelector, TableName, Target,
};

use crate::error::ParseErrorKind;
use crate::token::Token;

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// `-t TABLE`, when given.
    pub(crate) table: Option<(TableName, usize)>,
    /// `-4` or `-6`, when given.
    pub(crate) family: Option<Family>,
    /// The command.
    pub(crate) command: Command,
}

/// An error at a token index (`tokens.len()` for "at the end").
pub(crate) type ArgError = (usize, ParseErrorKind);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cmd {
    Append,
    Insert,
    Delete,
    Replace,
    NewChain,
    DeleteChain,
    Flush,
    Zero,
    Policy,
    Rename,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    None,
    Match(usize),
    Target,
}

/// Whether match module `module` takes option `opt`: `Some(true|false)` for modules the
/// model knows, `None` for unknown modules (which take whatever follows them).
fn takes(module: &str, opt: &str) -> Option<bool> {
    portcullis_rules::view::match_takes_option(module, opt)
}

/// The module `-p PROTO` loads implicitly when one of its options follows.
fn implicit_module(proto: &Protocol) -> Option<&'static str> {
    Some(match proto.number()? {
        6 => "tcp",
        17 => "udp",
        1 => "icmp",
        58 => "icmp6",
        132 => "sctp",
        33 => "dccp",
        136 => "udplite",
        _ => return None,
    })
}

/// Long base options and the short letter they stand for.
fn long_base(name: &str) -> Option<char> {
    Some(match name {
        "append" => 'A',
        "insert" => 'I',
        "delete" => 'D',
        "replace" => 'R',
        "new-chain" | "new" => 'N',
        "delete-chain" => 'X',
        "flush" => 'F',
        "zero" => 'Z',
        "policy" => 'P',
        "rename-chain" => 'E',
        "table" => 't',
        "source" | "src" => 's',
        "destination" | "dst" => 'd',
        "in-interface" => 'i',
        "out-interface" => 'o',
        "protocol" => 'p',
        "fragment" | "fragments" => 'f',
        "match" => 'm',
        "jump" => 'j',
        "goto" => 'g',
        "set-counters" => 'c',
        "ipv4" => '4',
        "ipv6" => '6',
        "wait" => 'w',
        "wait-interval" => 'W',
        "verbose" => 'v',
        "numeric" => 'n',
        "exact" => 'x',
        _ => return None,
    })
}

pub(crate) fn is_option_token(t: &Token<'_>) -> bool {
    !t.quoted && t.text.len() > 1 && t.text.starts_with('-')
}

pub(crate) fn is_bang(t: &Token<'_>) -> bool {
    !t.quoted && t.text == "!"
}

struct P<'a, 'b> {
    toks: &'a [Token<'b>],
    i: usize,
}

impl<'a, 'b> P<'a, 'b> {
    fn peek(&self) -> Option<&'a Token<'b>> {
        self.toks.get(self.i)
    }

    /// The next token as a required argument of `opt` (borrowed from the line when it
    /// can be: most arguments are parsed, not kept).
    fn arg(&mut self, opt: &str, glued: Option<String>) -> Result<(Cow<'b, str>, usize), ArgError> {
        if let Some(g) = glued {
            // `-j-x` means `-j -x`, and a value that reads as an option is refused in
            // both spellings (else `-j-x` would print as `-j -x`, which does not parse).
            if g.len() > 1 && g.starts_with('-') {
                return Err((self.i - 1, ParseErrorKind::MissingArgument(opt.to_owned())));
            }
            return Ok((Cow::Owned(g), self.i - 1));
        }
        match self.toks.get(self.i) {
            Some(t) if !is_option_token(t) => {
                self.i += 1;
                Ok((t.text.clone(), self.i - 1))
            }
            _ => {
                Err((self.i.min(self.toks.len()), ParseErrorKind::MissingArgument(opt.to_owned())))
            }
        }
    }

    /// The next token when it is a plain word (for optional arguments).
    fn optional(&mut self, glued: Option<String>) -> Option<(Cow<'b, str>, usize)> {
        if let Some(g) = glued {
            return Some((Cow::Owned(g), self.i - 1));
        }
        match self.toks.get(self.i) {
            Some(t) if !is_option_token(t) && !is_bang(t) => {
                self.i += 1;
                Some((t.text.clone(), self.i - 1))
            }
            _ => None,
        }
    }
}

fn model(at: usize) -> impl Fn(portcullis_rules::ModelError) -> ArgError {
    move |e| (at, ParseErrorKind::from(e))
}

/// A match or target name (`-m NAME`, `-j NAME`): iptables refuses an empty one or one
/// with whitespace (`Invalid target name`, `Couldn't load match`). A leading `-`/`!`
/// could not be written back as the same single word either. A `"` is refused in a match
/// name; a `-j` name may be a user chain, whose name may hold one (it is quoted on
/// output).
fn extension_name(s: &str, at: usize, quote_ok: bool) -> Result<(), ArgError> {
    let bad = s.is_empty()
        || s.starts_with(['-', '!'])
        || s.bytes().any(|b| b.is_ascii_whitespace() || b == 0x0b || (b == b'"' && !quote_ok));
    if bad { Err((at, ParseErrorKind::BadArgument(s.to_owned()))) } else { Ok(()) }
}

fn chain_name(s: &str, at: usize) -> Result<ChainName, ArgError> {
    ChainName::new(s).map_err(model(at))
}

fn parse_index(s: &str, at: usize) -> Result<usize, ArgError> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err((at, ParseErrorKind::BadArgument(s.to_owned()))),
    }
}

fn parse_counters(p: &str, b: &str, at: usize) -> Result<Counters, ArgError> {
    match (p.parse::<u64>(), b.parse::<u64>()) {
        (Ok(packets), Ok(bytes)) => Ok(Counters { packets, bytes }),
        _ => Err((at, ParseErrorKind::BadCounters(format!("{p} {b}")))),
    }
}

/// Parses the argv of one iptables command (program name and `-t` excluded or included).
/// `in_restore` forbids `-t`.
pub(crate) fn parse_args(toks: &[Token<'_>], in_restore: bool) -> Result<Parsed, ArgError> {
    let mut p = P { toks, i: 0 };
    let mut cmd: Option<(Cmd, usize)> = None;
    let mut cmd_args: Vec<(Cow<'_, str>, usize)> = Vec::with_capacity(2);
    let mut table = None;
    let mut family = None;
    let mut rule = Rule::default();
    // Sized from the tokens, so that the rule needs no reallocation to be kept.
    let modules = toks.iter().filter(|t| !t.quoted && matches!(&*t.text, "-m" | "--match")).count();
    rule.matches = Vec::with_capacity(modules);
    let mut ctx = Ctx::None;
    let mut neg: Option<usize> = None;
    let mut policy_counters = None;
    // Bit set of the base options seen (`-s -d -i -o -p -f` may each come once).
    let mut seen_base = 0u8;
    let mut first_time = |letter: char| {
        let bit = 1u8 << "sdiopf".find(letter).unwrap_or(7);
        let first = seen_base & bit == 0;
        seen_base |= bit;
        first
    };

    while let Some(tok) = p.peek() {
        let at = p.i;
        if is_bang(tok) {
            if neg.is_some() {
                return Err((at, ParseErrorKind::BadNegation("multiple `!' flags not allowed")));
            }
            neg = Some(at);
            p.i += 1;
            continue;
        }
        if !is_option_token(tok) {
            return Err((at, ParseErrorKind::BadArgument(tok.text.to_string())));
        }
        let text: &str = &tok.text;
        p.i += 1;
        // Split into a base letter (with a glued value) or a module option name.
        // (Byte searches: these run for every option of every rule.)
        let (letter, glued, long_name) = if let Some(long) = text.strip_prefix("--") {
            let (name, inline) = match long.bytes().position(|b| b == b'=') {
                Some(eq) => (&long[..eq], Some(long[eq + 1..].to_owned())),
                None => (long, None),
            };
            match long_base(name) {
                Some(c) => (Some(c), inline, String::new()),
                None => (None, inline, name.to_owned()),
            }
        } else {
            let c = text[1..].chars().next().unwrap_or('-');
            let rest = &text[1 + c.len_utf8()..];
            (Some(c), (!rest.is_empty()).then(|| rest.to_owned()), String::new())
        };
        let negated = neg.take().is_some();
        let Some(letter) = letter else {
            // A module option.
            let mut negated = negated;
            // Old intrapositioned form `--dport ! 22` (read only).
            let value_after_bang =
                p.toks.get(p.i + 1).is_some_and(|t| !is_option_token(t) && !is_bang(t));
            if glued.is_none() && p.peek().is_some_and(is_bang) && value_after_bang {
                negated = true;
                p.i += 1;
            }
            // The arguments run to the next option or `!`; size the vector exactly, since a
            // kube-proxy-sized ruleset holds hundreds of thousands of these.
            let count =
                p.toks[p.i..].iter().take_while(|t| !is_option_token(t) && !is_bang(t)).count();
            let mut args = Vec::with_capacity(count + usize::from(glued.is_some()));
            if let Some(v) = glued {
                args.push(v);
            }
            for t in &p.toks[p.i..p.i + count] {
                args.push(t.text.to_string());
            }
            p.i += count;
            let opt = Opt { negated, name: long_name, args };
            place_module_option(&mut rule, &mut ctx, opt, at, text)?;
            continue;
        };
        let set_cmd = |cmd: &mut Option<(Cmd, usize)>, c: Cmd| {
            if cmd.is_some() {
                return Err((at, ParseErrorKind::TwoCommands));
            }
            *cmd = Some((c, at));
            Ok(())
        };
        if negated && !matches!(letter, 's' | 'd' | 'i' | 'o' | 'p' | 'f') {
            let why = match letter {
                'm' => "unexpected ! flag before --match",
                'j' | 'g' => "cannot negate a target",
                _ => "this option cannot be negated",
            };
            return Err((at, ParseErrorKind::BadNegation(why)));
        }
        match letter {
            'A' | 'I' | 'D' | 'R' | 'N' | 'X' | 'F' | 'Z' | 'P' | 'E' => {
                let c = match letter {
                    'A' => Cmd::Append,
                    'I' => Cmd::Insert,
                    'D' => Cmd::Delete,
                    'R' => Cmd::Replace,
                    'N' => Cmd::NewChain,
                    'X' => Cmd::DeleteChain,
                    'F' => Cmd::Flush,
                    'Z' => Cmd::Zero,
                    'P' => Cmd::Policy,
                    _ => Cmd::Rename,
                };
                set_cmd(&mut cmd, c)?;
                let opt = if letter == 'A' { "-A" } else { "command" };
                match c {
                    Cmd::Append | Cmd::NewChain => cmd_args.push(p.arg(opt, glued)?),
                    Cmd::Insert | Cmd::Delete => {
                        cmd_args.push(p.arg(opt, glued)?);
                        if p.peek().is_some_and(|t| !t.quoted && t.text.parse::<usize>().is_ok()) {
                            cmd_args.push(p.optional(None).expect("peeked"));
                        }
                    }
                    Cmd::Replace | Cmd::Policy | Cmd::Rename => {
                        cmd_args.push(p.arg(opt, glued)?);
                        cmd_args.push(p.arg(opt, None)?);
                    }
                    Cmd::DeleteChain | Cmd::Flush | Cmd::Zero => {
                        if let Some(a) = p.optional(glued) {
                            cmd_args.push(a);
                        }
                    }
                }
            }
            't' => {
                if in_restore {
                    return Err((at, ParseErrorKind::TableOption));
                }
                let (t, ti) = p.arg("-t", glued)?;
                table = Some((TableName::from_str(&t).map_err(model(ti))?, ti));
            }
            '4' => family = Some(Family::V4),
            '6' => family = Some(Family::V6),
            's' | 'd' | 'i' | 'o' | 'p' | 'f' if !first_time(letter) => {
                return Err((
                    at,
                    ParseErrorKind::BadArgument(format!("multiple -{letter} flags not allowed")),
                ));
            }
            's' | 'd' => {
                let name = if letter == 's' { "-s" } else { "-d" };
                let mut negated = negated;
                let (mut v, mut vi) = p.arg(name, glued)?;
                if v == "!" {
                    // Old `-s ! addr` (read only).
                    negated = true;
                    (v, vi) = p.arg(name, None)?;
                }
                // A comma list expands into one rule per address; keep the first and let
                // the caller expand (see `expand_addresses`).
                let addr = Address::from_str(&v).map_err(model(vi))?;
                let slot = if letter == 's' { &mut rule.src } else { &mut rule.dst };
                *slot = Some(Negatable { negated, value: addr });
            }
            'i' | 'o' => {
                let (v, vi) = p.arg(if letter == 'i' { "-i" } else { "-o" }, glued)?;
                let iface = Interface::new(&v).map_err(model(vi))?;
                let slot = if letter == 'i' { &mut rule.in_iface } else { &mut rule.out_iface };
                *slot = Some(Negatable { negated, value: iface });
            }
            'p' => {
                let (v, vi) = p.arg("-p", glued)?;
                let proto = Protocol::from_str(&v).map_err(model(vi))?;
                rule.proto = Some(Negatable { negated, value: proto });
            }
            'f' => rule.fragment = Some(negated),
            'm' => {
                let (v, vi) = p.arg("-m", glued)?;
                extension_name(&v, vi, false)?;
                let mut m = Match::new(&v);
                m.opts = Vec::with_capacity(options_ahead(p.toks, p.i));
                rule.matches.push(m);
                ctx = Ctx::Match(rule.matches.len() - 1);
            }
            'j' => {
                let (v, vi) = p.arg("-j", glued)?;
                extension_name(&v, vi, true)?;
                if rule.action.is_some() {
                    return Err((at, ParseErrorKind::BadArgument(text.to_owned())));
                }
                let mut t = Target::new(&v);
                t.opts = Vec::with_capacity(options_ahead(p.toks, p.i));
                rule.action = Some(Action::Jump(t));
                ctx = Ctx::Target;
            }
            'g' => {
                let (v, vi) = p.arg("-g", glued)?;
                if rule.action.is_some() {
                    return Err((at, ParseErrorKind::BadArgument(text.to_owned())));
                }
                rule.action = Some(Action::Goto(chain_name(&v, vi)?));
                ctx = Ctx::None;
            }
            'c' => {
                let (v, vi) = p.arg("-c", glued)?;
                let counters = if let Some((a, b)) = v.split_once(',') {
                    parse_counters(a, b, vi)?
                } else {
                    let (b, _) = p.arg("-c", None)?;
                    parse_counters(&v, &b, vi)?
                };
                rule.counters = Some(counters);
                policy_counters = Some(counters);
            }
            'w' => {
                if glued.is_none() && p.peek().is_some_and(|t| t.text.parse::<u32>().is_ok()) {
                    p.i += 1;
                }
            }
            'W' => {
                p.arg("-W", glued)?;
            }
            'v' | 'n' | 'x' => {}
            _ => return Err((at, ParseErrorKind::UnknownOption(text.to_owned()))),
        }
    }
    if let Some(n) = neg {
        return Err((n, ParseErrorKind::BadNegation("`!' at the end of the line")));
    }
    let Some((c, cat)) = cmd else {
        return Err((0, ParseErrorKind::NoCommand));
    };
    // An option written before the module that takes it was loaded (by a later `-m`, or
    // by a later `-p` that loads it implicitly) is refused, as iptables refuses it: the
    // model kept it with the target or a module that does not take it, and printed back,
    // where `-p` and the matches come first, it would be read as that module's.
    let implicit =
        rule.proto.as_ref().filter(|p| !p.negated).and_then(|p| implicit_module(&p.value));
    let owner = |name: &str, matches_too: bool| -> Option<String> {
        let later = matches_too
            .then(|| rule.matches.iter().find(|m| takes(&m.name, name) == Some(true)))
            .flatten()
            .map(|m| m.name.clone());
        later.or_else(|| implicit.filter(|m| takes(m, name) == Some(true)).map(str::to_owned))
    };
    let mut misplaced = None;
    if let Some(Action::Jump(t)) = &rule.action {
        misplaced = t
            .opts
            .iter()
            .filter(|o| portcullis_rules::view::target_takes_option(&t.name, &o.name) != Some(true))
            .find_map(|o| owner(&o.name, true).map(|m| (o.name.clone(), m)));
    }
    // A match holds an option it does not take only for want of a module; only the
    // implicit one can claim it later.
    if misplaced.is_none() && implicit.is_some() {
        misplaced = rule
            .matches
            .iter()
            .flat_map(|m| m.opts.iter().map(move |o| (m, o)))
            .filter(|(m, o)| takes(&m.name, &o.name) == Some(false))
            .find_map(|(_, o)| owner(&o.name, false).map(|m| (o.name.clone(), m)));
    }
    if let Some((name, module)) = misplaced {
        let option = format!("--{name}");
        let at = toks
            .iter()
            .position(|t| t.text == option.as_str() || t.text.starts_with(&format!("{option}=")))
            .unwrap_or(0);
        return Err((at, ParseErrorKind::OptionBeforeItsModule { option, module }));
    }
    // Only the commands that take no rule ask (a default rule costs a build and a drop).
    let has_rule = || rule != Rule { counters: rule.counters, ..Rule::default() };
    let arg = |k: usize| cmd_args.get(k).map(|(a, i)| (a.to_string(), *i));
    let mut command = match c {
        Cmd::Append => {
            let (chain, ci) = arg(0).ok_or((cat, ParseErrorKind::MissingArgument("-A".into())))?;
            chain_name_ok(&chain, ci)?;
            Command::Append { chain, rule }
        }
        Cmd::Insert => {
            let (chain, ci) = arg(0).ok_or((cat, ParseErrorKind::MissingArgument("-I".into())))?;
            chain_name_ok(&chain, ci)?;
            let index = match arg(1) {
                Some((n, ni)) => parse_index(&n, ni)?,
                None => 1,
            };
            Command::Insert { chain, index, rule }
        }
        Cmd::Replace => {
            let (chain, ci) = arg(0).ok_or((cat, ParseErrorKind::MissingArgument("-R".into())))?;
            chain_name_ok(&chain, ci)?;
            let (n, ni) = arg(1).ok_or((cat, ParseErrorKind::MissingArgument("-R".into())))?;
            Command::Replace { chain, index: parse_index(&n, ni)?, rule }
        }
        Cmd::Delete => {
            let (chain, ci) = arg(0).ok_or((cat, ParseErrorKind::MissingArgument("-D".into())))?;
            chain_name_ok(&chain, ci)?;
            let which = match arg(1) {
                Some((n, ni)) if !has_rule() => RuleSelector::Index(parse_index(&n, ni)?),
                Some((n, ni)) => return Err((ni, ParseErrorKind::BadArgument(n))),
                None => RuleSelector::Spec(Box::new(rule)),
            };
            Command::Delete { chain, which }
        }
        Cmd::NewChain => {
            let (chain, ci) = arg(0).ok_or((cat, ParseErrorKind::MissingArgument("-N".into())))?;
            no_rule(has_rule(), cat)?;
            Command::NewChain(chain_name(&chain, ci)?)
        }
        Cmd::DeleteChain => {
            no_rule(has_rule(), cat)?;
            Command::DeleteChain(arg(0).map(|a| a.0))
        }
        Cmd::Flush => {
            no_rule(has_rule(), cat)?;
            Command::Flush(arg(0).map(|a| a.0))
        }
        Cmd::Zero => {
            no_rule(has_rule(), cat)?;
            Command::Zero(arg(0).map(|a| a.0))
        }
        Cmd::Policy => {
            no_rule(has_rule(), cat)?;
            let (chain, _) = arg(0).ok_or((cat, ParseErrorKind::MissingArgument("-P".into())))?;
            let (pol, pi) = arg(1).ok_or((cat, ParseErrorKind::MissingArgument("-P".into())))?;
            let policy = Policy::from_str(&pol).map_err(|()| {
                (
                    pi,
                    ParseErrorKind::from(portcullis_rules::ModelError::new(
                        portcullis_rules::ModelErrorKind::InvalidPolicy {
                            chain: chain.clone(),
                            policy: pol.clone(),
                        },
                    )),
                )
            })?;
            Command::Policy { chain, policy, counters: policy_counters }
        }
        Cmd::Rename => {
            no_rule(has_rule(), cat)?;
            let (old, _) = arg(0).ok_or((cat, ParseErrorKind::MissingArgument("-E".into())))?;
            let (new, ni) = arg(1).ok_or((cat, ParseErrorKind::MissingArgument("-E".into())))?;
            Command::Rename { old, new: chain_name(&new, ni)? }
        }
    };
    if let Command::Append { rule, .. }
    | Command::Insert { rule, .. }
    | Command::Replace { rule, .. } = &mut command
    {
        fit(rule);
    }
    Ok(Parsed { table, family, command })
}

/// How many module options (`--name` words) follow token `from` before the next module,
/// target or goto: the most a match or target opened there can take.
fn options_ahead(toks: &[Token<'_>], from: usize) -> usize {
    toks.get(from..)
        .unwrap_or_default()
        .iter()
        .filter(|t| !t.quoted)
        .take_while(|t| !matches!(&*t.text, "-m" | "--match" | "-j" | "--jump" | "-g" | "--goto"))
        .filter(|t| t.text.starts_with("--"))
        .count()
}

/// Gives the rule's vectors back their spare capacity: a rule lives as long as the model,
/// and vectors grown one push at a time keep room for four elements.
fn fit(rule: &mut Rule) {
    for m in &mut rule.matches {
        m.opts.shrink_to_fit();
    }
    rule.matches.shrink_to_fit();
    if let Some(Action::Jump(t)) = &mut rule.action {
        t.opts.shrink_to_fit();
    }
}

fn chain_name_ok(chain: &str, at: usize) -> Result<(), ArgError> {
    // Builtin names are valid chain names too; only the shape is checked here.
    let blank = |b: u8| b.is_ascii_whitespace() || b == 0x0b;
    if chain.is_empty()
        || chain.len() > ChainName::MAX_LEN
        || chain.starts_with(['-', '!'])
        || chain.bytes().any(blank)
    {
        chain_name(chain, at)?;
    }
    Ok(())
}

fn no_rule(has_rule: bool, at: usize) -> Result<(), ArgError> {
    if has_rule {
        Err((at, ParseErrorKind::NotAllowed("this command takes no rule specification")))
    } else {
        Ok(())
    }
}

/// Puts a module option where iptables would: the current module when it knows the
/// option (or is unknown to portcullis), an earlier module that knows it, the implicit
/// protocol match of `-p`, or the target.
fn place_module_option(
    rule: &mut Rule,
    ctx: &mut Ctx,
    opt: Opt,
    at: usize,
    text: &str,
) -> Result<(), ArgError> {
    let knows = |m: &Match, name: &str| takes(&m.name, name).unwrap_or(true);
    if let Ctx::Match(i) = *ctx
        && knows(&rule.matches[i], &opt.name)
    {
        rule.matches[i].opts.push(opt);
        return Ok(());
    }
    if let Some(m) = rule.matches.iter_mut().find(|m| takes(&m.name, &opt.name) == Some(true)) {
        m.opts.push(opt);
        return Ok(());
    }
    if let Some(module) =
        rule.proto.as_ref().filter(|p| !p.negated).and_then(|p| implicit_module(&p.value))
        && takes(module, &opt.name) == Some(true)
    {
        let mut m = Match::new(module);
        m.opts.push(opt);
        rule.matches.push(m);
        *ctx = Ctx::Match(rule.matches.len() - 1);
        return Ok(());
    }
    match (*ctx, &mut rule.action) {
        (Ctx::Target, Some(Action::Jump(t))) => {
            t.opts.push(opt);
            Ok(())
        }
        (Ctx::Match(i), _) => {
            rule.matches[i].opts.push(opt);
            Ok(())
        }
        _ => Err((at, ParseErrorKind::UnknownOption(text.to_owned()))),
    }
}
