//! `d3hr-cli` (skeleton). The `distill`, `invert`, `sample`, `merge` and `inspect` commands
//! arrive with issue 4; until then the binary says so instead of pretending.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version" | "-V") => {
            println!("d3hr-cli {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "d3hr-cli {}: the pipeline commands are not implemented yet; \
                 run `cargo run -p d3hr-core --features alloc --example pipeline` for the core loop",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::from(2)
        }
    }
}
