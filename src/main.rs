//! The `nimriz-matrix` command: parse flags, resolve them into each command's settings, run
//! it on the libraries, print, render the error once, map the exit code. Signals are handled
//! here too; the libraries get a "stop" future.

mod cli;
mod output;
mod settings;
mod shell;
mod signals;

use clap::{CommandFactory, FromArgMatches};
use cli::{Cli, Command};
use nimriz_matrix_core::report::Reporter as _;
use nimriz_matrix_core::report::SharedReporter;
use nimriz_matrix_core::{Error, Result, apply, exit, lifecycle, manifest, plan};
use output::Printer;
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    signals::surface_file_size_limits();
    // `--color` is read before clap parses, so clap's own help and errors follow it too.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let color = output::color::enabled(
        output::color::prescan(&args),
        |name| std::env::var_os(name),
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    );
    let parsed = Cli::command()
        .color(output::color::for_clap(color))
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::INVALID
            } else {
                exit::OK
            });
        }
    };
    // `plan`/`refresh --detailed-exitcode`: 2 means "changes", so every error is 1.
    let detailed = match &cli.command {
        Command::Plan(a) => a.detailed_exitcode,
        Command::Refresh(a) => a.detailed_exitcode,
        _ => false,
    };
    match run(cli, color) {
        Ok(code) if detailed && code != exit::OK && code != exit::CHANGES => {
            ExitCode::from(exit::PARTIAL)
        }
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            output::render_error(&err, color);
            ExitCode::from(if detailed {
                exit::PARTIAL
            } else {
                err.exit_code()
            })
        }
    }
}

/// Run one command; with `--message-format` other than human, its problems and warnings
/// are printed as one document at the end instead of as text.
fn run(cli: Cli, color: bool) -> Result<u8> {
    let format = cli.message_format;
    if format == cli::MessageFormat::Human {
        let printer = Printer::new(cli.quiet, cli.verbose).with_color(color);
        return run_command(cli, printer);
    }
    let stream = match cli.command {
        Command::Validate(_) => output::diagnostics::Stream::Stdout,
        _ => output::diagnostics::Stream::Stderr,
    };
    let warnings = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut printer = Printer::new(cli.quiet, cli.verbose);
    printer.collected_warnings = Some(warnings.clone());
    let result = run_command(cli, printer);
    let warnings = warnings
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    output::diagnostics::emit(format, stream, result.as_ref().map(|_| ()), &warnings);
    // The document said it all; exit with the command's code and print nothing more.
    result.or_else(|e| Ok(e.exit_code()))
}

/// Run one command to completion; returns the process exit code.
fn run_command(cli: Cli, printer: Printer) -> Result<u8> {
    let shared: SharedReporter = Arc::new(printer.clone());
    let verbose = cli.verbose;
    match cli.command {
        Command::Validate(args) => plan::validate_command(&settings::validate(&args), &printer),
        Command::Build(args) if args.dry_run => {
            let code = plan::dry_run_command(&settings::dry_run(&args), &printer)?;
            // With a record, also say what a build would change (counts on stderr).
            let manifest = args
                .manifest
                .clone()
                .unwrap_or_else(|| manifest::default_path(&args.spec));
            if manifest.exists() {
                let quiet = nimriz_matrix_core::report::Silent;
                let inputs = settings::inputs(&args.inputs);
                // An extra: a manifest it cannot read is said, the dry-run still succeeds.
                match lifecycle::compare(&args.spec, &manifest, args.max_links, &inputs, &quiet) {
                    Ok(c) => printer.info(&format!(
                        "against {}: {} (details: nimriz-matrix plan {})",
                        manifest.display(),
                        lifecycle::summary(&c.classified.counts),
                        args.spec.display()
                    )),
                    Err(e) => {
                        printer.warn(&format!("not compared with {}: {e}", manifest.display()))
                    }
                }
            }
            Ok(code)
        }
        Command::Build(args) => {
            // Spec problems come before key or flag problems: they are found offline.
            let saved = match &args.plan {
                Some(p) => Some((p.clone(), lifecycle::SavedPlan::read(p)?)),
                None => None,
            };
            let inputs = settings::inputs(&args.inputs);
            // Checked here, walked again while sending (the links are never all held).
            let plan = plan::prepare_with(&args.spec, args.max_links, &inputs, &printer)?;
            let mut build = settings::build(&args)?;
            settings::refuse_manifest_over_inputs(&build, &plan.source, &args.spec)?;
            if let Some((path, saved)) = &saved {
                let now = lifecycle::hashes_now(&plan.source, &build.manifest_path)?;
                lifecycle::check_fresh(saved, path, &now)?;
                build.update |= saved.needs_update();
            }
            let rt = runtime()?;
            // Signal handlers first, before any work of the build.
            let interrupted = {
                let _in_runtime = rt.enter();
                signals::interrupted()
            };
            let report = rt.block_on(apply::run_build(plan, &build, &shared, interrupted))?;
            output::print_build_report(&report, &printer);
            // Stopped by a signal: 128 + its number (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).
            Ok(match report.exit_code() {
                exit::INTERRUPTED => signals::stop_code().unwrap_or(exit::INTERRUPTED),
                code => code,
            })
        }
        Command::Plan(args) => {
            if args.refresh {
                let live = settings::plan_refresh(&args)?;
                let report = runtime()?.block_on(apply::run_refresh(&live, &shared))?;
                printer.info(&report.summary());
                if !report.unreadable.is_empty() {
                    for l in &report.unreadable {
                        printer.warn(l);
                    }
                }
            }
            lifecycle::plan_command(&settings::plan(&args, verbose), &printer)
        }
        Command::Refresh(args) => {
            let live = settings::refresh(&args)?;
            runtime()?.block_on(apply::refresh_command(
                &live,
                &shared,
                args.detailed_exitcode,
            ))
        }
        Command::Import(args) => {
            let live = settings::import(&args)?;
            runtime()?.block_on(apply::import_command(&live, &shared))
        }
        Command::Retire(args) => {
            let s = settings::retire(&args)?;
            let mut confirm = shell::confirm;
            runtime()?.block_on(apply::retire_command(&s, &shared, &mut confirm))
        }
        Command::Export(args) => {
            let job = settings::export(&args)?;
            settings::refuse_export_over_inputs(&args)?;
            let table = match &job.table {
                Some(settings::ExportTable::Text(s)) => manifest::export_command(s, &printer)?,
                Some(settings::ExportTable::Xlsx(s)) => nimriz_handoff::xlsx_command(s, &printer)?,
                None => exit::OK,
            };
            let codes = match &job.qr {
                Some(s) => nimriz_handoff::qr_command(s, &printer)?,
                None => exit::OK,
            };
            Ok(table.max(codes))
        }
        Command::Shorten(args) => {
            runtime()?.block_on(apply::shorten_command(&settings::shorten(&args), &shared))
        }
        Command::Sandbox(args) => {
            settings::refuse_state_over_specs(&args)?;
            runtime()?.block_on(nimriz_sandbox::serve_command(
                settings::sandbox(&args),
                &printer,
                signals::stop_requested(),
            ))
        }
        Command::Listen(args) => nimriz_listen::listen_command(
            settings::listen(args),
            &shared,
            signals::stop_requested(),
        ),
        Command::Completions(args) => shell::completions(args.shell, &mut std::io::stdout()),
        Command::Man => shell::man(&mut std::io::stdout()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("start", "the async runtime", e))
}

// Expansion allocates many short strings per link; mimalloc is markedly faster at that
// than glibc malloc (measured: see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
