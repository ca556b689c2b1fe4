//! Galleon: small event-driven functions that turn a VHD or an Image Builder run into a published,
//! replicated, announced Azure Compute Gallery image version.
