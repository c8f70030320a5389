//! Flags → settings, once per command (ripgrep's `HiArgs`, uv's `settings.rs`): the
//! libraries take these resolved structs and never see clap.

use crate::cli;
use nimriz_matrix_core::apply::{
    BuildSettings, LiveSettings, MAX_CONCURRENCY, RetireHow, RetireSettings, ShortenSettings,
};
use nimriz_matrix_core::guard::{Protected, refuse_protected, spec_files};
use nimriz_matrix_core::lifecycle::{PlanOutput, PlanSettings};
use nimriz_matrix_core::manifest::{ExportFormat, ExportSettings};
use nimriz_matrix_core::plan::PlanSource;
use nimriz_matrix_core::plan::{DryRunSettings, PlanFormat, ValidateSettings};
use nimriz_matrix_core::spec::InputPolicy;
use nimriz_matrix_core::{Error, Result};
use std::path::Path;

pub fn validate(a: &cli::ValidateArgs) -> ValidateSettings {
    ValidateSettings {
        spec: a.spec.clone(),
        max_links: a.max_links,
        inputs: inputs(&a.inputs),
    }
}

/// `--allow-outside-inputs` (or `NIMRIZ_MATRIX_ALLOW_OUTSIDE_INPUTS=1`), `--max-input-bytes`,
/// `--encoding`.
pub fn inputs(a: &cli::InputArgs) -> InputPolicy {
    InputPolicy {
        allow_outside: a.allow_outside_inputs,
        max_bytes: a.max_input_bytes,
        encoding: a.encoding,
    }
}

pub fn dry_run(a: &cli::BuildArgs) -> DryRunSettings {
    DryRunSettings {
        spec: a.spec.clone(),
        max_links: a.max_links,
        inputs: inputs(&a.inputs),
        format: match a.format {
            cli::PlanFormat::Table => PlanFormat::Table,
            cli::PlanFormat::Csv => PlanFormat::Csv,
            cli::PlanFormat::Json => PlanFormat::Json,
            cli::PlanFormat::Jsonl => PlanFormat::Jsonl,
        },
        output: a.output.clone(),
        protected: manifest_files(&manifest_path(a)),
    }
}

/// `--manifest`, or `<spec stem>.manifest.json` beside the spec.
fn manifest_path(a: &cli::BuildArgs) -> std::path::PathBuf {
    a.manifest
        .clone()
        .unwrap_or_else(|| nimriz_matrix_core::manifest::default_path(&a.spec))
}

/// A manifest and the files that go with it: no output may replace them.
pub fn manifest_files(m: &std::path::Path) -> Vec<Protected> {
    use nimriz_matrix_core::manifest::{journal_path, lock_path};
    vec![
        Protected::new(m, "the manifest"),
        Protected::new(journal_path(m), "the manifest's journal"),
        Protected::new(lock_path(m), "the manifest's lock file"),
    ]
}

/// A build's manifest (and its journal and lock) must not be the spec or one of its inputs:
/// `build spec.toml --manifest spec.toml` would replace the spec with the record.
pub fn refuse_manifest_over_inputs(
    build: &BuildSettings,
    source: &PlanSource,
    spec: &Path,
) -> Result<()> {
    let protected = spec_files(spec, &source.inputs);
    for own in manifest_files(&build.manifest_path) {
        refuse_protected("--manifest", &own.path, &protected)?;
    }
    Ok(())
}

/// `--api-base` > `NIMRIZ_API_BASE` > default; the key from `--api-key-file` or
/// `NIMRIZ_API_KEY`; batch and concurrency limits checked.
pub fn build(a: &cli::BuildArgs) -> Result<BuildSettings> {
    let api = nimriz::ApiConfig::resolve(a.api.api_base.as_deref(), a.api.api_key_file.as_deref())?;
    let mut s = BuildSettings::checked(api, manifest_path(a), a.batch_size, a.concurrency)?;
    s.update = a.update;
    s.force_drift = a.force_drift;
    s.break_printed = a.break_printed;
    Ok(s)
}

fn manifest_for(spec: &std::path::Path, given: Option<&std::path::PathBuf>) -> std::path::PathBuf {
    given
        .cloned()
        .unwrap_or_else(|| nimriz_matrix_core::manifest::default_path(spec))
}

pub fn plan(a: &cli::PlanArgs, verbose: bool) -> PlanSettings {
    PlanSettings {
        spec: a.spec.clone(),
        manifest: manifest_for(&a.spec, a.manifest.as_ref()),
        max_links: a.max_links,
        format: match a.format {
            cli::PlanOutputFormat::Human => PlanOutput::Human,
            cli::PlanOutputFormat::Json => PlanOutput::Json,
            cli::PlanOutputFormat::Markdown => PlanOutput::Markdown,
        },
        detailed_exitcode: a.detailed_exitcode,
        out: a.out.clone(),
        verbose,
        inputs: inputs(&a.inputs),
        break_printed: a.break_printed,
    }
}

fn live(
    spec: &std::path::Path,
    manifest: Option<&std::path::PathBuf>,
    (api, input_args): (&cli::ApiArgs, &cli::InputArgs),
    max_links: u64,
    concurrency: usize,
) -> Result<LiveSettings> {
    if concurrency == 0 || concurrency > MAX_CONCURRENCY {
        return Err(Error::Usage(format!(
            "--concurrency must be between 1 and {MAX_CONCURRENCY}, got {concurrency}"
        )));
    }
    Ok(LiveSettings {
        api: nimriz::ApiConfig::resolve(api.api_base.as_deref(), api.api_key_file.as_deref())?,
        spec: spec.to_path_buf(),
        manifest_path: manifest_for(spec, manifest),
        max_links,
        concurrency,
        inputs: inputs(input_args),
    })
}

/// `plan --refresh`: refresh's settings from plan's flags.
pub fn plan_refresh(a: &cli::PlanArgs) -> Result<LiveSettings> {
    live(
        &a.spec,
        a.manifest.as_ref(),
        (&a.api, &a.inputs),
        a.max_links,
        4,
    )
}

pub fn refresh(a: &cli::RefreshArgs) -> Result<LiveSettings> {
    live(
        &a.spec,
        a.manifest.as_ref(),
        (&a.api, &a.inputs),
        a.max_links,
        a.concurrency,
    )
}

pub fn import(a: &cli::ImportArgs) -> Result<LiveSettings> {
    live(
        &a.spec,
        a.manifest.as_ref(),
        (&a.api, &a.inputs),
        a.max_links,
        4,
    )
}

pub fn retire(a: &cli::RetireArgs) -> Result<RetireSettings> {
    let how = match (&a.fallback, &a.expire_at, a.delete) {
        (Some(u), _, _) => RetireHow::Fallback(u.clone()),
        (_, Some(t), _) => RetireHow::ExpireAt(t.clone()),
        _ => RetireHow::Delete,
    };
    how.check()?;
    Ok(RetireSettings {
        live: live(
            &a.spec,
            a.manifest.as_ref(),
            (&a.api, &a.inputs),
            a.max_links,
            a.concurrency,
        )?,
        how,
        orphans_only: a.orphans_only,
        yes: a.yes,
    })
}

/// What `export` writes: a table (CSV/JSON to a file or stdout, or an xlsx file) and/or QR
/// codes. `--qr DIR` without `-o` writes only the codes.
pub struct ExportJob {
    pub table: Option<ExportTable>,
    pub qr: Option<nimriz_handoff::QrSettings>,
}

pub enum ExportTable {
    Text(ExportSettings),
    Xlsx(nimriz_handoff::XlsxSettings),
}

/// `export -o FILE` must not replace the spec the manifest was built from, or its input
/// files (the manifest's own files are checked by the export itself). The spec path was
/// recorded as given to `build`: taken from here and, as the default manifest sits beside
/// its spec, from the manifest's folder.
pub fn refuse_export_over_inputs(a: &cli::ExportArgs) -> Result<()> {
    let Some(out) = a.output.as_deref() else {
        return Ok(());
    };
    let Ok(m) = nimriz_matrix_core::manifest::load(&a.manifest) else {
        return Ok(()); // the export itself reports an unreadable manifest
    };
    let recorded = Path::new(&m.source.spec_path);
    let mut protected = spec_files(recorded, &m.source.inputs);
    if let (Some(name), Some(dir)) = (recorded.file_name(), a.manifest.parent()) {
        protected.extend(spec_files(&dir.join(name), &m.source.inputs));
    }
    refuse_protected("--output", out, &protected)
}

pub fn export(a: &cli::ExportArgs) -> Result<ExportJob> {
    use nimriz_handoff::{Correction, QrSettings, QrStyle, Rgb, XlsxSettings};
    let to_file = a
        .output
        .as_deref()
        .is_some_and(|o| o != std::path::Path::new("-"));
    let table = if a.qr.is_some() && a.output.is_none() {
        None
    } else {
        Some(match a.format {
            cli::ExportFormat::Xlsx => {
                let Some(output) = a.output.clone().filter(|_| to_file) else {
                    return Err(Error::Usage(
                        "--format xlsx writes a file: add -o FILE.xlsx".into(),
                    ));
                };
                ExportTable::Xlsx(XlsxSettings {
                    manifest: a.manifest.clone(),
                    output,
                    sheet_by: a.sheet_by.clone(),
                })
            }
            format => ExportTable::Text(ExportSettings {
                manifest: a.manifest.clone(),
                format: if format == cli::ExportFormat::Json {
                    ExportFormat::Json
                } else {
                    ExportFormat::Csv
                },
                output: a.output.clone(),
                bom: match a.bom {
                    cli::Bom::Always => true,
                    cli::Bom::Never => false,
                    cli::Bom::Auto => to_file,
                },
            }),
        })
    };
    let qr = match &a.qr {
        None => None,
        Some(dir) => Some(QrSettings {
            manifest: a.manifest.clone(),
            dir: dir.clone(),
            name: a.qr_name.clone(),
            style: QrStyle {
                size_px: a.qr_size,
                correction: match a.qr_ec {
                    cli::QrCorrection::L => Correction::L,
                    cli::QrCorrection::M => Correction::M,
                    cli::QrCorrection::Q => Correction::Q,
                    cli::QrCorrection::H => Correction::H,
                },
                quiet_zone: a.qr_quiet_zone,
                dark: Rgb::parse(&a.qr_dark)
                    .map_err(|e| Error::Usage(format!("--qr-dark: {e}")))?,
                light: Rgb::parse(&a.qr_light)
                    .map_err(|e| Error::Usage(format!("--qr-light: {e}")))?,
            },
            sheets: a.sheets,
            sheet_by: a.sheet_by.clone(),
            force: a.force,
        }),
    };
    Ok(ExportJob { table, qr })
}

pub fn shorten(a: &cli::ShortenArgs) -> ShortenSettings {
    ShortenSettings {
        url: a.url.clone(),
        allow_http: a.allow_http,
        domain: a.domain.clone(),
        domain_id: a.domain_id.clone(),
        slug: a.slug.clone(),
        utm_source: a.utm_source.clone(),
        utm_medium: a.utm_medium.clone(),
        utm_campaign: a.utm_campaign.clone(),
        utm_term: a.utm_term.clone(),
        utm_content: a.utm_content.clone(),
        utm_id: a.utm_id.clone(),
        redirect: a.redirect,
        expires_at: a.expires_at.clone(),
        api_base: a.api.api_base.clone(),
        api_key_file: a.api.api_key_file.clone(),
    }
}

/// `sandbox --state PATH` is rewritten after every change: it must not be one of the `--spec`
/// files, or the manifest (journal, lock) a build of one would keep beside it.
pub fn refuse_state_over_specs(a: &cli::SandboxArgs) -> Result<()> {
    let Some(state) = &a.state else {
        return Ok(());
    };
    let mut protected = Vec::new();
    for spec in &a.spec {
        protected.extend(spec_files(spec, &[]));
        protected.extend(manifest_files(&nimriz_matrix_core::manifest::default_path(
            spec,
        )));
    }
    refuse_protected("--state", state, &protected)
}

pub fn sandbox(a: &cli::SandboxArgs) -> nimriz_sandbox::SandboxOptions {
    nimriz_sandbox::SandboxOptions {
        addr: a.addr.clone(),
        allow_remote: a.allow_remote,
        key: a.key.clone(),
        domain: a.domain.clone(),
        spec: a.spec.clone(),
        state: a.state.clone(),
        allow_http: a.allow_http,
        min_slug_length: a.min_slug_length,
        seed: a.seed,
        latency_ms: a.latency_ms,
        rate_limit: a.rate_limit,
        rate_headers: a.rate_headers,
        fail_rate: a.fail_rate,
        drop_after_commit_rate: a.drop_after_commit_rate,
        bulk_max: a.bulk_max,
        no_bulk: a.no_bulk,
        conflict_status: a.conflict_status,
        response_shape: a.response_shape,
        webhook_url: a.webhook_url.clone(),
        webhook_secret_env: a.webhook_secret_env.clone(),
        click_url: a.click_url.clone(),
        click_header_env: a.click_header_env.clone(),
        click_header: a.click_header.clone(),
    }
}

pub fn listen(a: cli::ListenArgs) -> nimriz_listen::ListenOptions {
    use nimriz_listen::{
        ListenCommand as L, LogOptions, ReplayOptions, ServeOptions, StoreOptions,
    };
    let serve = |s: cli::ServeArgs| ServeOptions {
        config: s.config,
        bind: s.bind,
        allow_remote: s.allow_remote,
        write_batch: s.write_batch,
    };
    let store = |s: cli::StoreArgs| StoreOptions {
        config: s.config,
        db: s.db,
    };
    nimriz_listen::ListenOptions {
        command: a.command.map(|c| match c {
            cli::ListenCommand::Serve(s) => L::Serve(serve(s)),
            cli::ListenCommand::Log(l) => L::Log(LogOptions {
                store: store(l.store),
                since: l.since,
                event_id: l.event_id,
            }),
            cli::ListenCommand::Replay(r) => L::Replay(ReplayOptions {
                store: store(r.store),
                event_id: r.event_id,
                action: r.action,
            }),
        }),
        serve: serve(a.serve),
    }
}
