//! The shibafu binary (also installed as `container-tool`): parse, dispatch, exit.

use clap::Parser;

fn main() {
    let cli = shibafu::cli::Cli::parse();
    let code = match shibafu::cli::dispatch(cli) {
        Ok(code) => code,
        // Like any Unix filter, end quietly when the reader went away.
        Err(err) if shibafu::cli::is_broken_pipe(&err) => 141,
        Err(err) => {
            eprintln!("shibafu: {err:#}");
            shibafu::cli::exit_code(&err)
        }
    };
    std::process::exit(code);
}
