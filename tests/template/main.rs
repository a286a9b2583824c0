//! `template.yaml` against the code it deploys and the rules it must keep, one module a concern.
//! Each check reads the template (and the stack each backend deploys) and copies broken the ways
//! that matter; nothing is started. `variables` holds the code's own lists of what it reads, which
//! `wiring` compares with the template, to what the code does read.

mod api;
mod backends;
mod delivery;
mod intake;
mod lambda;
mod security;
mod start;
mod uploads;
mod variables;
mod wiring;
