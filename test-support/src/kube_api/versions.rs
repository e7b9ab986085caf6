//! `metadata.resourceVersion`: a counter bumped whenever an object's content changes.
//!
//! The model has no versions of its own; the server remembers a hash of each object it served and the
//! version at which that content first appeared. So versions only grow, equal content keeps its version
//! between requests, and a watch can tell what changed since a list.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use super::objects::Served;

#[derive(Debug, Default)]
pub struct ResourceVersions {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    latest: u64,
    /// Object identity (kind, namespace, name, uid) to its content hash and version.
    objects: HashMap<String, (u64, u64)>,
}

impl ResourceVersions {
    /// Sets each object's resource version; returns the version of the collection as a whole.
    pub fn stamp<K: Served>(&self, objects: &mut [K]) -> u64 {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for object in objects.iter_mut() {
            let meta = object.metadata_mut();
            meta.resource_version = None;
            let key = format!(
                "{}/{}/{}/{}",
                K::KIND,
                meta.namespace.as_deref().unwrap_or(""),
                meta.name.as_deref().unwrap_or(""),
                meta.uid.as_deref().unwrap_or("")
            );
            let mut h = DefaultHasher::new();
            // Serialising a k8s-openapi object cannot fail (no maps with non-string keys).
            serde_json::to_vec(&*object)
                .unwrap_or_default()
                .hash(&mut h);
            let hash = h.finish();
            let version = match inner.objects.get(&key) {
                Some((known, version)) if *known == hash => *version,
                _ => {
                    inner.latest += 1;
                    let version = inner.latest;
                    inner.objects.insert(key, (hash, version));
                    version
                }
            };
            object.metadata_mut().resource_version = Some(version.to_string());
        }
        inner.latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn namespace(name: &str, label: &str) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([("l".to_owned(), label.to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }
    }

    fn version(n: &Namespace) -> u64 {
        n.metadata
            .resource_version
            .as_deref()
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn versions_move_only_with_content() {
        let versions = ResourceVersions::default();
        let mut first = [namespace("a", "1"), namespace("b", "1")];
        let list = versions.stamp(&mut first);
        assert_eq!(list, 2);
        let mut again = [namespace("a", "1"), namespace("b", "2")];
        let list = versions.stamp(&mut again);
        assert_eq!(version(&again[0]), version(&first[0]), "unchanged");
        assert!(version(&again[1]) > version(&first[1]), "changed");
        assert_eq!(list, version(&again[1]));
    }
}
