//! `devcloud`: runs galleon's local cloud (ARM, identity, Service Bus, Event Grid, Functions host) with one command.

fn main() {
    eprintln!("devcloud: not assembled yet; see the devcloud-* crates");
    std::process::exit(2);
}
