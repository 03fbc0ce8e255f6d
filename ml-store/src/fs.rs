//! Refusing a journal on a network file system: SQLite's WAL mode relies on shared memory
//! and POSIX locks that NFS, SMB and their kin do not provide across hosts, so two
//! processes could both believe they hold the write lock.

use std::path::Path;

use crate::error::{StoreError, StoreResult};

/// `statfs` `f_type` magic numbers of network and cluster file systems (linux/magic.h and
/// the file systems' own headers).
const NETWORK_FS: &[(u32, &str)] = &[
    (0x0000_6969, "NFS"),
    (0x0000_517B, "SMB"),
    (0xFF53_4D42, "CIFS"),
    (0xFE53_4D42, "SMB2"),
    (0x5346_414F, "AFS"),
    (0x7375_7245, "Coda"),
    (0x00C3_6400, "Ceph"),
    (0x0BD0_0BD0, "Lustre"),
    (0x0116_1970, "GFS2"),
    (0x7461_636F, "OCFS2"),
    (0x0000_564C, "NCP"),
];

/// The network file system a `statfs` `f_type` names, if it is one.
pub(crate) fn network_fs_name(f_type: u64) -> Option<&'static str> {
    // `f_type` is a signed long on some targets: CIFS's magic arrives sign-extended.
    let magic = (f_type & 0xFFFF_FFFF) as u32;
    NETWORK_FS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name)
}

/// Refuses a journal whose directory is on a network file system. A directory that cannot
/// be examined is let through: opening the file reports the real problem.
#[cfg(target_os = "linux")]
pub(crate) fn refuse_network_fs(path: &Path, label: &str) -> StoreResult<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(st) = rustix::fs::statfs(dir) else {
        return Ok(());
    };
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    let f_type = st.f_type as u64;
    match network_fs_name(f_type) {
        Some(fs) => Err(StoreError::NetworkFileSystem {
            path: label.to_owned(),
            fs,
        }),
        None => Ok(()),
    }
}

/// Other systems: no portable check; documented as unsupported.
#[cfg(not(target_os = "linux"))]
pub(crate) fn refuse_network_fs(_path: &Path, _label: &str) -> StoreResult<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::network_fs_name;

    #[test]
    fn network_magic_numbers_are_recognised() {
        assert_eq!(network_fs_name(0x6969), Some("NFS"));
        assert_eq!(network_fs_name(0x517B), Some("SMB"));
        assert_eq!(network_fs_name(0xFF53_4D42), Some("CIFS"));
        // Sign-extended, as a signed 64-bit f_type holds it.
        assert_eq!(network_fs_name(0xFFFF_FFFF_FF53_4D42), Some("CIFS"));
        assert_eq!(network_fs_name(0xFE53_4D42), Some("SMB2"));
        assert_eq!(network_fs_name(0x00C3_6400), Some("Ceph"));
        // Local: ext4, xfs, btrfs, tmpfs, overlayfs.
        for local in [
            0xEF53u64,
            0x5846_5342,
            0x9123_683E,
            0x0102_1994,
            0x794C_7630,
        ] {
            assert_eq!(network_fs_name(local), None, "{local:#x}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_local_directory_is_accepted() {
        let dir = tempfile::tempdir().expect("tempdir");
        super::refuse_network_fs(&dir.path().join("j.db"), "j.db").expect("local");
        super::refuse_network_fs(std::path::Path::new("j.db"), "j.db").expect("cwd");
    }
}
