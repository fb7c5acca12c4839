//! Rebuilds when a migration is added: refinery embeds the folder at compile
//! time, and cargo does not watch folders by itself.
fn main() {
    println!("cargo:rerun-if-changed=src/postgres/migrations");
}
