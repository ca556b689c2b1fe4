//! Reads Virtual Hard Disk (VHD) images from their first and last sectors: footer, disk type, partition table.
