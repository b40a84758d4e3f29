//! Every key of the explorer as data: the key handler ([`action_of`]), the help overlay, the
//! status bar's hints ([`hints`]) and the README's key table all read this one table, so a key
//! cannot do one thing and be documented as another, and no key can be bound twice (a test
//! checks).

use crossterm::event::KeyCode;

use crate::tui::state::Focus;

/// What a key asks the explorer to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Up,
    Down,
    PageUp,
    PageDown,
    First,
    Last,
    Shrink,
    Grow,
    CycleScheme,
    EditParam,
    SpikeAware,
    /// Average + eval the window (in the spikes panel: go to the spike).
    Enter,
    EvalRaw,
    Sweep,
    Export,
    ToggleX,
    ToggleLogY,
    TogglePpl,
    ToggleTrain,
    /// Hide / show the chart's n-th eval series (its legend number, 1-based).
    ToggleSeries(u8),
    ToggleGain,
    CycleMetric,
    ZoomIn,
    ZoomOut,
    ZoomReset,
    PanLeft,
    PanRight,
    LessSmoothing,
    MoreSmoothing,
    NextSpike,
    PrevSpike,
    EditCtx,
    EditMaxTokens,
    Cancel,
    CancelAll,
    Focus,
    Help,
    Escape,
    Quit,
}

/// One row of the help: the keys as shown, what they do, and each key's action.
pub struct KeyRow {
    pub keys: &'static str,
    pub what: &'static str,
    pub bindings: &'static [(KeyCode, Action)],
}

const fn row(
    keys: &'static str,
    what: &'static str,
    bindings: &'static [(KeyCode, Action)],
) -> KeyRow {
    KeyRow {
        keys,
        what,
        bindings,
    }
}

use Action as A;
use KeyCode::Char as C;

/// Every key of the explorer, in help order. Ctrl-C and the mouse are handled before keys
/// are looked up; their rows carry no bindings.
pub const KEYS: &[KeyRow] = &[
    row(
        "↑ ↓ / j k",
        "move the cursor (or the selection in jobs/spikes)",
        &[
            (KeyCode::Up, A::Up),
            (C('k'), A::Up),
            (KeyCode::Down, A::Down),
            (C('j'), A::Down),
        ],
    ),
    row(
        "PgUp PgDn Home End G",
        "page, first, last checkpoint",
        &[
            (KeyCode::PageUp, A::PageUp),
            (KeyCode::PageDown, A::PageDown),
            (KeyCode::Home, A::First),
            (KeyCode::End, A::Last),
            (C('G'), A::Last),
        ],
    ),
    row(
        "[ ] / - +",
        "shrink / grow the window (k)",
        &[
            (C('['), A::Shrink),
            (C('-'), A::Shrink),
            (C(']'), A::Grow),
            (C('+'), A::Grow),
            (C('='), A::Grow),
        ],
    ),
    row(
        "w",
        "cycle scheme: uniform, EMA, linear, custom",
        &[(C('w'), A::CycleScheme)],
    ),
    row(
        "p",
        "edit the scheme's parameter (k, half-life, weights)",
        &[(C('p'), A::EditParam)],
    ),
    row(
        "a",
        "spike-aware window: leave out checkpoints in spikes",
        &[(C('a'), A::SpikeAware)],
    ),
    row(
        "Enter",
        "average the window + eval it (and the raw checkpoint)",
        &[(KeyCode::Enter, A::Enter)],
    ),
    row(
        "r",
        "eval the raw checkpoint at the cursor",
        &[(C('r'), A::EvalRaw)],
    ),
    row(
        "s",
        "sweep: average + eval at every checkpoint",
        &[(C('s'), A::Sweep)],
    ),
    row(
        "e",
        "export chart (PNG, SVG) and results (CSV, JSON)",
        &[(C('e'), A::Export)],
    ),
    row("x", "x axis: step / tokens", &[(C('x'), A::ToggleX)]),
    row("l", "y axis: linear / log", &[(C('l'), A::ToggleLogY)]),
    row(
        "y",
        "y axis: loss (nats) / perplexity",
        &[(C('y'), A::TogglePpl)],
    ),
    row(
        "v",
        "train loss: shown / hidden",
        &[(C('v'), A::ToggleTrain)],
    ),
    row(
        "1 … 9",
        "eval series n of the legend: shown / hidden",
        &[
            (C('1'), A::ToggleSeries(1)),
            (C('2'), A::ToggleSeries(2)),
            (C('3'), A::ToggleSeries(3)),
            (C('4'), A::ToggleSeries(4)),
            (C('5'), A::ToggleSeries(5)),
            (C('6'), A::ToggleSeries(6)),
            (C('7'), A::ToggleSeries(7)),
            (C('8'), A::ToggleSeries(8)),
            (C('9'), A::ToggleSeries(9)),
        ],
    ),
    row(
        "g",
        "gain view: averaged − raw eval NLL against zero / losses",
        &[(C('g'), A::ToggleGain)],
    ),
    row(
        "m",
        "metric: perplexity / each task's accuracy (--task)",
        &[(C('m'), A::CycleMetric)],
    ),
    row(
        "i o 0",
        "zoom in / out / reset",
        &[
            (C('i'), A::ZoomIn),
            (C('o'), A::ZoomOut),
            (C('0'), A::ZoomReset),
        ],
    ),
    row(
        "← → / h",
        "pan the zoomed chart",
        &[
            (KeyCode::Left, A::PanLeft),
            (C('h'), A::PanLeft),
            (KeyCode::Right, A::PanRight),
        ],
    ),
    row(
        "< >",
        "less / more smoothing of the train loss",
        &[
            (C('<'), A::LessSmoothing),
            (C(','), A::LessSmoothing),
            (C('>'), A::MoreSmoothing),
            (C('.'), A::MoreSmoothing),
        ],
    ),
    row(
        "n N",
        "jump to the next / previous spike",
        &[(C('n'), A::NextSpike), (C('N'), A::PrevSpike)],
    ),
    row(
        "t T",
        "eval context length / max tokens",
        &[(C('t'), A::EditCtx), (C('T'), A::EditMaxTokens)],
    ),
    row(
        "c C",
        "cancel the highlighted job (in Jobs; else the running one) / all",
        &[(C('c'), A::Cancel), (C('C'), A::CancelAll)],
    ),
    row(
        "Tab",
        "focus: checkpoints, jobs, spikes",
        &[(KeyCode::Tab, A::Focus)],
    ),
    row(
        "? Esc",
        "this help / close, reset zoom",
        &[(C('?'), A::Help), (KeyCode::Esc, A::Escape)],
    ),
    row(
        "q Ctrl-C",
        "quit (q asks once while jobs are queued or running)",
        &[(C('q'), A::Quit)],
    ),
    row(
        "mouse",
        "click: cursor; drag on chart: window; wheel: zoom",
        &[],
    ),
];

/// A status-bar hint: the keys of `actions` (each one's first binding in [`KEYS`]) and a word.
pub struct Hint {
    pub actions: &'static [Action],
    pub label: &'static str,
}

const fn hint(actions: &'static [Action], label: &'static str) -> Hint {
    Hint { actions, label }
}

const HELP: Hint = hint(&[A::Help], "help");
const QUIT: Hint = hint(&[A::Quit], "quit");
const FOCUS: Hint = hint(&[A::Focus], "focus");
const CHECKPOINT_HINTS: &[Hint] = &[
    hint(&[A::Enter], "avg+eval"),
    hint(&[A::Sweep], "sweep"),
    hint(&[A::Shrink, A::Grow], "k"),
    hint(&[A::CycleScheme], "scheme"),
    hint(&[A::Export], "export"),
    HELP,
    QUIT,
];
const JOB_HINTS: &[Hint] = &[
    hint(&[A::Up, A::Down], "job"),
    hint(&[A::Cancel], "cancel"),
    hint(&[A::CancelAll], "cancel all"),
    FOCUS,
    HELP,
    QUIT,
];
const SPIKE_HINTS: &[Hint] = &[
    hint(&[A::Up, A::Down], "spike"),
    hint(&[A::Enter], "go"),
    hint(&[A::SpikeAware], "spike-aware"),
    FOCUS,
    HELP,
    QUIT,
];

/// The status bar's hints for each focused panel, most used first. Only actions are named
/// here: the keys shown come from [`KEYS`], so a hint cannot name a key that does otherwise.
pub fn hints(focus: Focus) -> &'static [Hint] {
    match focus {
        Focus::Checkpoints => CHECKPOINT_HINTS,
        Focus::Jobs => JOB_HINTS,
        Focus::Spikes => SPIKE_HINTS,
    }
}

/// The first key bound to `action`.
pub fn first_key(action: Action) -> Option<KeyCode> {
    KEYS.iter()
        .flat_map(|r| r.bindings)
        .find(|(_, a)| *a == action)
        .map(|(k, _)| *k)
}

/// A key as the status bar shows it: `⏎`, `↑`, `Tab`, `c`.
pub fn key_label(code: KeyCode) -> String {
    match code {
        KeyCode::Enter => "⏎".into(),
        KeyCode::Up => "↑".into(),
        KeyCode::Down => "↓".into(),
        KeyCode::Left => "←".into(),
        KeyCode::Right => "→".into(),
        KeyCode::PageUp => "PgUp".into(),
        KeyCode::PageDown => "PgDn".into(),
        KeyCode::Char(c) => c.to_string(),
        other => format!("{other:?}"),
    }
}

/// The keys of a hint, as shown: `↑↓`, `[]`, `⏎`.
pub fn hint_keys(h: &Hint) -> String {
    h.actions
        .iter()
        .filter_map(|&a| first_key(a))
        .map(key_label)
        .collect()
}

/// The action bound to `code`, if any.
pub fn action_of(code: KeyCode) -> Option<Action> {
    KEYS.iter()
        .flat_map(|r| r.bindings)
        .find(|(k, _)| *k == code)
        .map(|(_, a)| *a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_key_is_bound_twice() {
        let all: Vec<KeyCode> = KEYS
            .iter()
            .flat_map(|r| r.bindings.iter().map(|b| b.0))
            .collect();
        for (i, k) in all.iter().enumerate() {
            assert!(!all[i + 1..].contains(k), "{k:?} is bound twice");
        }
    }

    /// Each hint's keys are the keys that do its actions, in every focus.
    #[test]
    fn hints_show_the_keys_bound_to_their_actions() {
        for focus in [Focus::Checkpoints, Focus::Jobs, Focus::Spikes] {
            assert!(!hints(focus).is_empty());
            for h in hints(focus) {
                for &a in h.actions {
                    let k = first_key(a).unwrap_or_else(|| panic!("{a:?} has no key"));
                    assert_eq!(action_of(k), Some(a), "{:?}", h.label);
                    assert!(hint_keys(h).contains(&key_label(k)));
                }
            }
        }
        let shrink_grow = hint(&[A::Shrink, A::Grow], "k");
        assert_eq!(hint_keys(&shrink_grow), "[]");
        assert_eq!(hint_keys(&hint(&[A::Enter], "go")), "⏎");
    }

    #[test]
    fn every_row_but_the_mouse_binds_a_key() {
        for r in KEYS {
            assert_eq!(r.bindings.is_empty(), r.keys == "mouse", "{}", r.keys);
        }
        assert_eq!(action_of(KeyCode::Char('g')), Some(Action::ToggleGain));
        assert_eq!(action_of(KeyCode::Char('Z')), None);
    }
}
