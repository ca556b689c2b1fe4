//! A local Azure Resource Manager for Compute images, galleries and Image Builder, faithful enough for the official clients.
