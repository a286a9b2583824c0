//! Static checks of the workspace's own source and manifests: nothing is built or started, so
//! they run first and fail fast.

mod import_circles;
mod manifests;
