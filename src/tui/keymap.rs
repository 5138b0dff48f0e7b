//! Key bindings from `keymaps/*.toml`: context -> key -> action, keys written like `"j"`,
//! `"C-c"`, `"S-tab"`, `"enter"`, and sequences like `"g g"`. Each context is a trie, so
//! sequences and single keys share one lookup. A file may `inherits = "default"` and change
//! only what it needs; binding a key to `"none"` removes it.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use toml::de::{DeTable, DeValue};

use super::action::Action;
use super::layered::Kind;
use crate::diag::{Checker, Diagnostic, suggest};

/// Where a binding applies. Panes look up their own context, then `list` for panes that show
/// a list, then `global`; dialogs look up `dialog`, then `list`, then `global`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Context {
    Global,
    List,
    Runs,
    Run,
    Stage,
    Dlq,
    Events,
    Canary,
    Compare,
    Assets,
    Pipelines,
    Dialog,
}

impl Context {
    /// Where a dialog (a popup or the footer's filter) looks its keys up.
    pub const DIALOG: &'static [Context] = &[Context::Dialog, Context::List, Context::Global];

    pub const ALL: [Context; 12] = [
        Context::Global,
        Context::List,
        Context::Runs,
        Context::Run,
        Context::Stage,
        Context::Dlq,
        Context::Events,
        Context::Canary,
        Context::Compare,
        Context::Assets,
        Context::Pipelines,
        Context::Dialog,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Context::Global => "global",
            Context::List => "list",
            Context::Runs => "runs",
            Context::Run => "run",
            Context::Stage => "stage",
            Context::Dlq => "dlq",
            Context::Events => "events",
            Context::Canary => "canary",
            Context::Compare => "compare",
            Context::Assets => "assets",
            Context::Pipelines => "pipelines",
            Context::Dialog => "dialog",
        }
    }
}

/// One key press, normalised so `G` and `S-g` are the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

impl Key {
    pub fn new(code: KeyCode, mods: KeyModifiers) -> Key {
        let mut mods = mods & (KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SHIFT);
        let code = match code {
            // Letters carry their case; shift on a character is implied by the character.
            KeyCode::Char(c) if mods.contains(KeyModifiers::SHIFT) && c.is_ascii_lowercase() => {
                KeyCode::Char(c.to_ascii_uppercase())
            }
            KeyCode::BackTab => {
                mods |= KeyModifiers::SHIFT;
                KeyCode::Tab
            }
            c => c,
        };
        if matches!(code, KeyCode::Char(_)) {
            mods.remove(KeyModifiers::SHIFT);
        }
        Key { code, mods }
    }

    pub fn from_event(e: &KeyEvent) -> Key {
        Key::new(e.code, e.modifiers)
    }

    /// Parses one key: `j`, `G`, `?`, `C-c`, `A-x`, `S-tab`, `enter`, `pagedown`, `f5`.
    pub fn parse(text: &str) -> Option<Key> {
        let mut mods = KeyModifiers::NONE;
        let mut rest = text;
        while rest.len() > 2 && rest.as_bytes()[1] == b'-' {
            match &rest[..1] {
                "C" => mods |= KeyModifiers::CONTROL,
                "A" => mods |= KeyModifiers::ALT,
                "S" => mods |= KeyModifiers::SHIFT,
                _ => return None,
            }
            rest = &rest[2..];
        }
        let code = match rest {
            "enter" | "ret" => KeyCode::Enter,
            "esc" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "backspace" => KeyCode::Backspace,
            "del" | "delete" => KeyCode::Delete,
            "space" => KeyCode::Char(' '),
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "pageup" => KeyCode::PageUp,
            "pagedown" => KeyCode::PageDown,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            s if s.len() > 1
                && s.starts_with('f')
                && s[1..].parse::<u8>().is_ok_and(|n| (1..=12).contains(&n)) =>
            {
                KeyCode::F(s[1..].parse().ok()?)
            }
            s if s.chars().count() == 1 => KeyCode::Char(s.chars().next()?),
            _ => return None,
        };
        Some(Key::new(code, mods))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mods.contains(KeyModifiers::CONTROL) {
            f.write_str("C-")?;
        }
        if self.mods.contains(KeyModifiers::ALT) {
            f.write_str("A-")?;
        }
        if self.mods.contains(KeyModifiers::SHIFT) {
            f.write_str("S-")?;
        }
        match self.code {
            KeyCode::Enter => f.write_str("enter"),
            KeyCode::Esc => f.write_str("esc"),
            KeyCode::Tab => f.write_str("tab"),
            KeyCode::Backspace => f.write_str("backspace"),
            KeyCode::Delete => f.write_str("del"),
            KeyCode::Char(' ') => f.write_str("space"),
            KeyCode::Up => f.write_str("↑"),
            KeyCode::Down => f.write_str("↓"),
            KeyCode::Left => f.write_str("←"),
            KeyCode::Right => f.write_str("→"),
            KeyCode::PageUp => f.write_str("pgup"),
            KeyCode::PageDown => f.write_str("pgdn"),
            KeyCode::Home => f.write_str("home"),
            KeyCode::End => f.write_str("end"),
            KeyCode::F(n) => write!(f, "f{n}"),
            KeyCode::Char(c) => write!(f, "{c}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// A sequence of keys, shown like `g g`.
pub fn show_seq(seq: &[Key]) -> String {
    seq.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Trie {
    children: HashMap<Key, Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Leaf(Action),
    Branch(Trie),
}

impl Trie {
    fn insert(&mut self, seq: &[Key], action: Action) {
        let Some((first, rest)) = seq.split_first() else {
            return;
        };
        if rest.is_empty() {
            self.children.insert(*first, Node::Leaf(action));
        } else {
            let node = self
                .children
                .entry(*first)
                .or_insert_with(|| Node::Branch(Trie::default()));
            if let Node::Leaf(_) = node {
                *node = Node::Branch(Trie::default());
            }
            if let Node::Branch(t) = node {
                t.insert(rest, action);
            }
        }
    }

    fn remove(&mut self, seq: &[Key]) {
        let Some((first, rest)) = seq.split_first() else {
            return;
        };
        if rest.is_empty() {
            self.children.remove(first);
        } else if let Some(Node::Branch(t)) = self.children.get_mut(first) {
            t.remove(rest);
        }
    }

    fn walk(&self, seq: &[Key]) -> Option<&Node> {
        let (first, rest) = seq.split_first()?;
        let node = self.children.get(first)?;
        match (node, rest.is_empty()) {
            (_, true) => Some(node),
            (Node::Branch(t), false) => t.walk(rest),
            (Node::Leaf(_), false) => None,
        }
    }

    /// The sequences bound to `action`.
    fn collect_action(&self, prefix: &mut Vec<Key>, action: Action, out: &mut Vec<Vec<Key>>) {
        for (k, node) in &self.children {
            prefix.push(*k);
            match node {
                Node::Leaf(a) if *a == action => out.push(prefix.clone()),
                Node::Leaf(_) => {}
                Node::Branch(t) => t.collect_action(prefix, action, out),
            }
            prefix.pop();
        }
    }

    fn collect(&self, prefix: &mut Vec<Key>, out: &mut Vec<(Vec<Key>, Action)>) {
        for (k, node) in &self.children {
            prefix.push(*k);
            match node {
                Node::Leaf(a) => out.push((prefix.clone(), *a)),
                Node::Branch(t) => t.collect(prefix, out),
            }
            prefix.pop();
        }
    }
}

/// What a key press (with any keys pending before it) resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Action(Action),
    /// The keys so far start a sequence: wait for the next.
    Pending,
    Unbound,
}

/// A loaded keymap.
#[derive(Debug, Clone, PartialEq)]
pub struct Keymap {
    pub name: String,
    contexts: BTreeMap<Context, Trie>,
}

/// The keys dialogs name in their hints ("Enter confirm   Esc cancel"), from the active
/// keymap, so a dialog never names a key that does not work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogKeys {
    pub confirm: String,
    pub back: String,
    pub help: String,
    /// Moving in a list or scrolling, where letters are free.
    pub up: String,
    pub down: String,
    /// Up and down in a dialog with a text field, where letters are typed.
    pub field_up: String,
    pub field_down: String,
    /// Completes in the palette, moves between fields in a form.
    pub complete: String,
    /// Shows the footer's messages whole; quits (on the too-small screen).
    pub messages: String,
    pub quit: String,
}

impl DialogKeys {
    pub fn of(km: &Keymap) -> DialogKeys {
        let any = |a: Action| {
            km.keys_for(Context::DIALOG, a)
                .into_iter()
                .next()
                .unwrap_or_else(|| "(unbound)".into())
        };
        // In a text field letters are typed, so name a key that is not a letter.
        let named = |a: Action| {
            let mut keys: Vec<Vec<Key>> = km
                .bindings(Context::DIALOG)
                .into_iter()
                .filter(|(seq, b)| *b == a && seq.len() == 1 && !is_letter(seq[0]))
                .map(|(seq, _)| seq)
                .collect();
            keys.sort_by_key(|s| show_seq(s));
            keys.first()
                .map_or_else(|| any(a), |s| title_case(&show_seq(s)))
        };
        DialogKeys {
            confirm: named(Action::Confirm),
            back: named(Action::Back),
            help: any(Action::Help),
            up: any(Action::Up),
            down: any(Action::Down),
            field_up: named(Action::Up),
            field_down: named(Action::Down),
            complete: named(Action::Complete),
            messages: any(Action::Messages),
            quit: any(Action::Quit),
        }
    }
}

/// A key that types a character into a text field.
fn is_letter(k: Key) -> bool {
    matches!(k.code, KeyCode::Char(c) if c != ' ')
        && !k.mods.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
}

/// `enter` -> `Enter`, as dialogs write key names.
fn title_case(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) if s.chars().count() > 1 && first.is_ascii_lowercase() => {
            first.to_ascii_uppercase().to_string() + c.as_str()
        }
        _ => s.to_string(),
    }
}

/// The keymaps shipped in the binary.
pub const BUILTIN: &[(&str, &str)] = &[
    ("default", include_str!("../../keymaps/default.toml")),
    ("arrows", include_str!("../../keymaps/arrows.toml")),
];

impl Keymap {
    /// Resolves `seq` (pending keys plus the new one) in the given contexts, in order.
    pub fn lookup(&self, contexts: &[Context], seq: &[Key]) -> Lookup {
        let mut pending = false;
        for c in contexts {
            match self.contexts.get(c).and_then(|t| t.walk(seq)) {
                Some(Node::Leaf(a)) if !pending => return Lookup::Action(*a),
                Some(Node::Branch(_)) => pending = true,
                _ => {}
            }
        }
        if pending {
            Lookup::Pending
        } else {
            Lookup::Unbound
        }
    }

    /// Every binding visible in `contexts`, first context winning, as (keys, action) pairs.
    pub fn bindings(&self, contexts: &[Context]) -> Vec<(Vec<Key>, Action)> {
        let mut out: Vec<(Vec<Key>, Action)> = Vec::new();
        for c in contexts {
            let mut here = Vec::new();
            if let Some(t) = self.contexts.get(c) {
                t.collect(&mut Vec::new(), &mut here);
            }
            // Tries do not keep an order: sort for a stable help and footer.
            here.sort_by_key(|(seq, a)| (*a, show_seq(seq)));
            for (seq, a) in here {
                // A sequence is unreachable when an earlier context binds one of its prefixes
                // (or the same keys) to an action: the help must not offer it.
                let shadowed = out
                    .iter()
                    .any(|(s, _)| seq.len() >= s.len() && seq[..s.len()] == s[..]);
                if !shadowed {
                    out.push((seq, a));
                }
            }
        }
        out
    }

    /// The keys that trigger `action` in `contexts`, shortest first.
    pub fn keys_for(&self, contexts: &[Context], action: Action) -> Vec<String> {
        // The same answer as filtering `bindings`, without collecting and sorting every
        // binding: this runs for every hint and tab of every frame.
        let mut keys: Vec<Vec<Key>> = Vec::new();
        for (i, c) in contexts.iter().enumerate() {
            let Some(t) = self.contexts.get(c) else {
                continue;
            };
            let mut here = Vec::new();
            t.collect_action(&mut Vec::new(), action, &mut here);
            here.sort_by_cached_key(|seq| show_seq(seq));
            keys.extend(
                here.into_iter()
                    .filter(|seq| !contexts[..i].iter().any(|e| self.shadows(*e, seq))),
            );
        }
        keys.sort_by_key(|s| {
            (
                s.len(),
                s.iter().map(|k| k.to_string().len()).sum::<usize>(),
            )
        });
        keys.iter().map(|s| show_seq(s)).collect()
    }

    /// Whether context `ctx` binds `seq` or one of its prefixes to an action, so `seq` cannot
    /// be reached in a context looked up after it.
    fn shadows(&self, ctx: Context, seq: &[Key]) -> bool {
        let Some(t) = self.contexts.get(&ctx) else {
            return false;
        };
        (1..=seq.len()).any(|n| matches!(t.walk(&seq[..n]), Some(Node::Leaf(_))))
    }

    /// Loads a keymap by name: a user file in `user_dir` wins over the built-in one.
    pub fn load(name: &str, user_dir: Option<&std::path::Path>) -> Result<Keymap, Vec<Diagnostic>> {
        let contexts = KIND.load(name, user_dir, &apply_file)?;
        Ok(Keymap {
            name: name.to_string(),
            contexts,
        })
    }

    /// The built-in default keymap (it is checked by tests, so this cannot fail at run time).
    pub fn builtin_default() -> Keymap {
        Keymap::load("default", None).unwrap_or(Keymap {
            name: "default".into(),
            contexts: BTreeMap::new(),
        })
    }
}

/// Keymaps as layered files.
const KIND: Kind = Kind {
    what: "keymap",
    folder: "keymaps",
    builtin: BUILTIN,
};

/// The bindings of one keymap file, laid over what it inherits.
fn apply_file(c: &mut Checker<'_>, root: &DeTable<'_>, contexts: &mut BTreeMap<Context, Trie>) {
    let mut known: Vec<&str> = vec!["inherits"];
    known.extend(Context::ALL.iter().map(|c| c.name()));
    c.known_keys(root, &known, "the keymap");
    for ctx in Context::ALL {
        let Some((table, _)) = c.table(root, ctx.name(), "the keymap") else {
            continue;
        };
        let trie = contexts.entry(ctx).or_default();
        for (key, value) in table {
            bind(c, trie, ctx, (key.get_ref().as_ref(), &key.span()), value);
        }
    }
}

/// One `"KEYS" = "action"` line of context `ctx`.
fn bind(
    c: &mut Checker<'_>,
    trie: &mut Trie,
    ctx: Context,
    (key_text, key_span): (&str, &std::ops::Range<usize>),
    value: &toml::Spanned<DeValue<'_>>,
) {
    let seq: Option<Vec<Key>> = key_text.split_whitespace().map(Key::parse).collect();
    let seq = match seq {
        Some(s) if !s.is_empty() => s,
        _ => {
            c.error(
                key_span,
                format!(
                    "`{key_text}` in [{}] is not a key; write keys like \"j\", \"G\", \"C-c\", \"S-tab\", \"enter\", \"pagedown\", \"f5\", or sequences like \"g g\"",
                    ctx.name()
                ),
            );
            return;
        }
    };
    match value.get_ref() {
        DeValue::String(a) if a == "none" => trie.remove(&seq),
        DeValue::String(a) => match Action::from_name(a) {
            Some(action) => trie.insert(&seq, action),
            None => {
                let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
                let hint = suggest(a, &names)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                c.error(
                    &value.span(),
                    format!(
                        "unknown action `{a}` for `{key_text}` in [{}]{hint}; valid actions: {}, or \"none\" to unbind",
                        ctx.name(),
                        names.join(", ")
                    ),
                );
            }
        },
        other => c.error(
            &value.span(),
            format!(
                "the binding of `{key_text}` in [{}] must be an action name (a string), found {}",
                ctx.name(),
                other.type_str()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Key {
        Key::parse(s).unwrap()
    }

    #[test]
    fn parses_and_normalises_keys() {
        assert_eq!(k("G"), Key::new(KeyCode::Char('g'), KeyModifiers::SHIFT));
        assert_eq!(k("S-tab"), Key::new(KeyCode::BackTab, KeyModifiers::SHIFT));
        assert_eq!(k("C-c").to_string(), "C-c");
        assert_eq!(k("pagedown").to_string(), "pgdn");
        assert!(
            Key::parse("C-").is_none()
                && Key::parse("hyper").is_none()
                && Key::parse("X-a").is_none()
        );
    }

    #[test]
    fn builtins_load_and_resolve_in_context_order() {
        for (name, _) in BUILTIN {
            Keymap::load(name, None).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        }
        let km = Keymap::builtin_default();
        let list = [Context::Runs, Context::List, Context::Global];
        assert_eq!(km.lookup(&list, &[k("j")]), Lookup::Action(Action::Down));
        assert_eq!(km.lookup(&list, &[k("g")]), Lookup::Pending);
        assert_eq!(
            km.lookup(&list, &[k("g"), k("g")]),
            Lookup::Action(Action::Top)
        );
        assert_eq!(
            km.lookup(&list, &[k("C-c")]),
            Lookup::Action(Action::Interrupt)
        );
        assert_eq!(km.lookup(&list, &[k("F")]), Lookup::Unbound);
        let arrows = Keymap::load("arrows", None).unwrap();
        assert_eq!(
            arrows.lookup(&list, &[k("j")]),
            Lookup::Unbound,
            "no letter navigation"
        );
        assert_eq!(
            arrows.lookup(&list, &[k("down")]),
            Lookup::Action(Action::Down)
        );
    }

    #[test]
    fn user_files_inherit_unbind_and_report_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mine.toml"),
            "inherits = \"default\"\n[list]\n\"j\" = \"none\"\n\"n\" = \"down\"\n",
        )
        .unwrap();
        let km = Keymap::load("mine", Some(dir.path())).unwrap();
        let list = [Context::List, Context::Global];
        assert_eq!(km.lookup(&list, &[k("j")]), Lookup::Unbound);
        assert_eq!(km.lookup(&list, &[k("n")]), Lookup::Action(Action::Down));
        assert_eq!(
            km.lookup(&list, &[k("k")]),
            Lookup::Action(Action::Up),
            "inherited"
        );

        std::fs::write(
            dir.path().join("bad.toml"),
            "[runs]\n\"x\" = \"qiut\"\n\"C-\" = \"quit\"\n[pane]\n",
        )
        .unwrap();
        let errs: Vec<String> = Keymap::load("bad", Some(dir.path()))
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        let file = dir.path().join("bad.toml").display().to_string();
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(errs[0].starts_with(&format!("{file}:2:7: unknown action `qiut` for `x` in [runs] (did you mean `quit`?); valid actions: quit, interrupt, back")), "{}", errs[0]);
        assert!(
            errs[1].starts_with(&format!("{file}:3:1: `C-` in [runs] is not a key")),
            "{}",
            errs[1]
        );
        assert!(
            errs[2].starts_with(&format!("{file}:4:2: unknown key `pane` in the keymap")),
            "{}",
            errs[2]
        );
        let missing = Keymap::load("nope", Some(dir.path())).unwrap_err()[0].to_string();
        assert!(
            missing
                .contains("there is no keymap `nope`; valid keymaps: arrows, bad, default, mine"),
            "{missing}"
        );
    }

    #[test]
    fn self_inheritance_and_shadowed_sequences_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("loop.toml"), "inherits = \"loop\"\n").unwrap();
        let err = Keymap::load("loop", Some(dir.path())).unwrap_err()[0].to_string();
        assert!(
            err.contains("names this keymap itself") && err.contains("there is no built-in `loop`"),
            "{err}"
        );
        std::fs::write(
            dir.path().join("g.toml"),
            "inherits = \"default\"\n[runs]\n\"g\" = \"sort\"\n",
        )
        .unwrap();
        let km = Keymap::load("g", Some(dir.path())).unwrap();
        let help = km.bindings(&[Context::Runs, Context::List, Context::Global]);
        assert!(
            help.iter().all(|(s, _)| show_seq(s) != "g g"),
            "`g g` is unreachable once `g` is bound"
        );
    }

    #[test]
    fn keys_for_agrees_with_the_bindings_it_shortcuts() {
        let sets: [&[Context]; 3] = [
            &[Context::Runs, Context::Run, Context::List, Context::Global],
            &[Context::Stage, Context::List, Context::Global],
            Context::DIALOG,
        ];
        for (name, _) in BUILTIN {
            let km = Keymap::load(name, None).unwrap();
            for contexts in sets {
                for a in Action::ALL {
                    let mut slow: Vec<Vec<Key>> = km
                        .bindings(contexts)
                        .into_iter()
                        .filter(|(_, b)| b == a)
                        .map(|(s, _)| s)
                        .collect();
                    slow.sort_by_key(|s| {
                        (
                            s.len(),
                            s.iter().map(|k| k.to_string().len()).sum::<usize>(),
                        )
                    });
                    let slow: Vec<String> = slow.iter().map(|s| show_seq(s)).collect();
                    assert_eq!(km.keys_for(contexts, *a), slow, "{name} {a:?} {contexts:?}");
                }
            }
        }
    }

    #[test]
    fn a_user_file_named_like_a_builtin_may_inherit_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("default.toml"),
            "inherits = \"default\"\n[global]\n\"Q\" = \"quit\"\n",
        )
        .unwrap();
        let km = Keymap::load("default", Some(dir.path())).unwrap();
        assert_eq!(
            km.lookup(&[Context::Global], &[k("Q")]),
            Lookup::Action(Action::Quit)
        );
        assert_eq!(
            km.lookup(&[Context::Global], &[k("q")]),
            Lookup::Action(Action::Quit)
        );
    }
}
