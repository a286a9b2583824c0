//! `template.yaml` against the code it deploys and the rules it must keep, one module a concern.
//! Each check reads the template (and the stack each backend deploys) and copies broken the ways
//! that matter; nothing is started.

mod api;
mod backends;
mod delivery;
mod intake;
mod lambda;
mod security;
mod start;
mod uploads;
mod wiring;
