use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;

/// A bug must still end in one sentence, not a stack trace; details go to the log file.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".to_string());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%message, place = %place, "panic");
        let _ = writeln!(
            std::io::stderr(),
            "opsdeck: internal error ({message}{place}); this is a bug, please report it with the log from WORKSPACE/.opsdeck/logs"
        );
    }));
}

fn main() -> ExitCode {
    install_panic_hook();
    let cli = opsdeck::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "opsdeck: cannot start the async runtime: {e}"
            );
            return ExitCode::from(opsdeck::cli::EXIT_FAILED);
        }
    };
    ExitCode::from(runtime.block_on(opsdeck::cli::dispatch(cli)))
}
