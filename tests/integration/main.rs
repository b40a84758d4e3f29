//! The integration tests: one binary (one link of the library) with a module per area, as
//! bottom's `tests/integration/main.rs` does; [`support`] holds what they share. Run one area
//! with `cargo test --test integration MODULE::`. Tests here run in parallel threads of one
//! process, so none of them sets the process environment: each passes the variables it means
//! to a child `lawa` or builds a [`lawa::Env`] from them.

mod support;

mod average_cli;
mod average_engine;
mod checkpoint_io;
mod demo_lawa;
mod demo_run;
mod doctor_cli;
mod e2e_tmux;
mod eval_api;
mod eval_cli;
mod faults_cli;
mod fuzz;
mod hub_api;
mod hub_average_eval;
mod hub_cli;
mod hub_env;
mod list_cli;
mod list_hf_cache;
mod list_run_dir;
mod model_families;
mod model_gpt_neox;
mod spikes_metrics;
mod sweep_tasks_cli;
mod tasks_lm_eval;
mod torch_read;
