//! Why a host could not start.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::node::NodeError;
use crate::transport::TransportError;
use crate::transport::identity::IdentityError;

/// A host that failed to start leaves nothing running.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot create the data dir {}", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("loading the node's secret key")]
    Identity(#[source] IdentityError),
    #[error("starting the iroh endpoint")]
    Endpoint(#[source] TransportError),
    #[error("restoring a backup needs an empty data dir; {} already holds a cluster", .0.display())]
    NotEmpty(PathBuf),
    /// Checked before the data dir is touched, so a bad backup leaves it
    /// unused.
    #[error("the backup {} cannot be restored: {reason}", path.display())]
    BadBackup { path: PathBuf, reason: String },
    #[error("starting the node")]
    Node(#[source] NodeError),
    /// The source names the address (said once in the error line).
    #[error("serving the API")]
    Api {
        addr: SocketAddr,
        #[source]
        source: crate::api::ServeError,
    },
    /// Checked before the data dir is touched.
    #[error(transparent)]
    ApiExposure(#[from] crate::api::ExposureError),
}
