//! Charts (PNG, SVG) and tables (CSV, JSON) from results.
