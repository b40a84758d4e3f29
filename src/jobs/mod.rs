//! Background jobs: queue, progress events, cancellation; runs average and eval off the UI thread.
