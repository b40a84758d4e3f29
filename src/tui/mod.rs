//! The terminal explorer: state, panels, key map, event loop. Lives in the binary: the engine never sees the terminal.
