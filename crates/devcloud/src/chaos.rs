//! Chaos knobs on the running local cloud that are not an admin route of one service: restarting
//! Azurite as a storage node restart (same port, same data), for the chaos suite.

use anyhow::{Context, Result};

use crate::Cloud;

impl Cloud {
    /// Stops Azurite (it saves its data) and starts it again on the same port with the same data
    /// directory; meanwhile storage calls through the blob proxy fail. The cloud must have been started
    /// with [`Options::azurite_on_disk`](crate::Options::azurite_on_disk), or every blob would be lost.
    pub async fn restart_azurite(&mut self) -> Result<()> {
        self.azurite.restart().await.context("restarting Azurite")
    }
}
