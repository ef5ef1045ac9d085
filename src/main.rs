fn main() -> std::process::ExitCode {
    vhdtool::cli::run()
}
