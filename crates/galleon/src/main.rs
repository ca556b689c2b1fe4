//! The custom-handler executable the Azure Functions host starts.

fn main() {}
