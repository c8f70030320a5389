//! What `refresh`, `import` and `retire` share with `build`: a client, the workspace check,
//! and the manifest opened for writing.

use crate::Result;
use crate::manifest::ManifestStore;
use crate::model::Plan;
use crate::report::SharedReporter;
use nimriz::{ApiConfig, Client};
use std::path::Path;

/// Settings every online lifecycle command takes.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    pub api: ApiConfig,
    pub spec: std::path::PathBuf,
    pub manifest_path: std::path::PathBuf,
    pub max_links: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// What the spec may make the command read (the runner's flags).
    pub inputs: crate::spec::InputPolicy,
}

/// A client, and the manifest (locked) once the key is known to belong to its workspace.
pub(crate) async fn open(
    api: &ApiConfig,
    manifest_path: &Path,
    plan: &Plan,
    printer: &SharedReporter,
) -> Result<(Client, ManifestStore)> {
    let client = Client::new(api.clone())?.with_reporter(printer.clone());
    let recorded = super::workspace::peek(manifest_path);
    let mut warnings = Vec::new();
    let now = super::workspace::current(&client.api_host(), client.whoami().await, &mut warnings)?;
    let (workspace, more) = super::workspace::check(manifest_path, recorded.as_ref(), now)?;
    let mut store = ManifestStore::open(manifest_path, &plan.source, Some(&client.api_host()))?;
    store.set_workspace(workspace)?;
    for note in warnings.iter().chain(&more).chain(store.notes()) {
        printer.warn(note);
    }
    Ok((client, store))
}
