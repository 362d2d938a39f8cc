//! Certificates for simulated nodes (`Sim::certs`).

use crate::crypto::{Identity, Seed};
use std::collections::HashMap;

/// Certificates for simulated nodes: one CA, a certificate per node (valid
/// around the simulator's clock), for the whole network's range unless
/// `prefixes` says otherwise for a node.
pub struct SimCerts {
    pub ca_seed: [u8; 32],
    pub network: String,
    pub prefixes: HashMap<u32, Vec<crate::crypto::cert::Prefix>>,
    /// Prefixes a node's certificate lets it route (none unless listed).
    pub routes: HashMap<u32, Vec<crate::crypto::cert::Prefix>>,
    /// A node's certificate groups (none unless listed).
    pub groups: HashMap<u32, Vec<String>>,
}

impl SimCerts {
    pub(super) fn for_node(
        &self,
        key: crate::crypto::NodeKey,
        i: u32,
    ) -> (crate::crypto::cert::Trust, Vec<u8>) {
        use crate::crypto::cert::{Cert, Prefix, Trust};
        let ca = Identity::from_seed(&Seed(self.ca_seed));
        let valid = (1_700_000_000, 1_900_000_000);
        let ca_cert = Cert::new_ca(&ca, &self.network, "sim CA", valid).expect("a CA certificate");
        let prefixes = self
            .prefixes
            .get(&i)
            .cloned()
            .unwrap_or_else(|| vec![Prefix::parse("100.64.0.0/10").expect("a prefix")]);
        let name = format!("n{i}");
        let groups = self.groups.get(&i).cloned().unwrap_or_default();
        let mut cert = Cert::new_node(&ca, key, &self.network, &name, prefixes, groups, valid)
            .expect("a certificate");
        if let Some(routes) = self.routes.get(&i) {
            cert = cert.with_routes(routes.clone(), &ca).expect("routes");
        }
        let trust = Trust {
            network: self.network.clone(),
            cas: vec![ca_cert],
            revocations: vec![],
        };
        (trust, cert.encode().expect("encodable"))
    }
}
