fn main() {
    std::process::exit(onboard::cli::main());
}
