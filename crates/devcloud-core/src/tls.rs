//! The local certificate authority: one CA and one leaf certificate for `127.0.0.1`, `localhost` and `::1`,
//! generated once into `<state>/tls/` and reused, plus the rustls server configuration built from them.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the TLS material could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot access {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate certificates")]
    Generate(#[from] rcgen::Error),
    #[error("cannot read PEM file {path}")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("cannot build the TLS server configuration")]
    Rustls(#[from] rustls::Error),
}

/// The local CA and leaf certificate on disk, and a server configuration that serves the leaf.
#[derive(Clone)]
pub struct Tls {
    /// CA certificate (PEM): what clients trust (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`).
    pub ca_pem: PathBuf,
    /// Leaf certificate chain (PEM): leaf then CA.
    pub cert_pem: PathBuf,
    /// Leaf private key (PEM, PKCS#8).
    pub key_pem: PathBuf,
    /// rustls server configuration serving the leaf (ALPN h2 and http/1.1).
    pub server_config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &self.key_pem)
            .finish_non_exhaustive()
    }
}

const CA_FILE: &str = "ca.pem";
const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Tls {
    /// Loads `<state>/tls/{ca,cert,key}.pem`, generating all three first if any is missing.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, TlsError> {
        crate::install_crypto_provider();
        let dir = state_dir.join("tls");
        let ca_pem = dir.join(CA_FILE);
        let cert_pem = dir.join(CERT_FILE);
        let key_pem = dir.join(KEY_FILE);
        if !(ca_pem.is_file() && cert_pem.is_file() && key_pem.is_file()) {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            generate(&ca_pem, &cert_pem, &key_pem)?;
        }
        let server_config = server_config(&cert_pem, &key_pem)?;
        Ok(Self {
            ca_pem,
            cert_pem,
            key_pem,
            server_config,
        })
    }

    /// The CA certificate as PEM bytes, for clients that add it as a root (e.g. `reqwest::Certificate::from_pem`).
    pub fn ca_pem_bytes(&self) -> Result<Vec<u8>, TlsError> {
        fs::read(&self.ca_pem).map_err(io_err(&self.ca_pem))
    }
}

fn generate(ca_path: &Path, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "galleon devcloud local CA");
    dn.push(DnType::OrganizationName, "galleon devcloud");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate()?;
    let mut leaf_params = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "::1".to_string(),
    ])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "127.0.0.1");
    leaf_params.distinguished_name = dn;
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer)?;

    // Key first with restrictive permissions, then the certificates; the CA file is written last
    // so a half-written directory is regenerated on the next start.
    write_private(key_path, leaf_key.serialize_pem().as_bytes())?;
    let chain = format!("{}{}", leaf_cert.pem(), ca_cert.pem());
    fs::write(cert_path, chain).map_err(io_err(cert_path))?;
    fs::write(ca_path, ca_cert.pem()).map_err(io_err(ca_path))?;
    Ok(())
}

/// Writes a file readable by its owner only.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))
}

fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Pem {
            path: cert.to_path_buf(),
            source,
        })?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Pem {
        path: key.to_path_buf(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
