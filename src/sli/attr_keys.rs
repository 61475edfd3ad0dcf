//! Finding an attribute key among the few that the classification rules read, once per
//! attribute of every entry span: the keys are grouped by length, so a key of a length no
//! rule reads costs one table lookup, and bytes are compared only between keys of one length
//! (keys of [`GROUPED_LENGTHS`] bytes or more share one group).

/// Lengths below this have a group each; keys this long or longer share the last group.
const GROUPED_LENGTHS: usize = 64;

/// A set of attribute keys, each with the index of its slot.
#[derive(Clone, Debug, Default)]
pub struct AttrKeys {
    /// The keys in order of group (length, capped at [`GROUPED_LENGTHS`]), with their slots.
    keys: Vec<(Box<[u8]>, usize)>,
    /// `keys[starts[n]..starts[n + 1]]` are the keys of group `n`: of length `n`, or of
    /// [`GROUPED_LENGTHS`] bytes or more for the last.
    starts: Vec<u16>,
}

impl AttrKeys {
    /// The index over `keys`, the slot of each being its position in `keys`.
    pub fn new(keys: &[Box<[u8]>]) -> Self {
        let group = |k: &[u8]| k.len().min(GROUPED_LENGTHS);
        let mut sorted: Vec<(Box<[u8]>, usize)> = keys
            .iter()
            .enumerate()
            .map(|(slot, k)| (k.clone(), slot))
            .collect();
        sorted.sort_by_key(|(k, slot)| (group(k), *slot));
        let mut starts = Vec::with_capacity(GROUPED_LENGTHS + 2);
        let mut at = 0usize;
        for n in 0..=GROUPED_LENGTHS + 1 {
            while sorted.get(at).is_some_and(|(k, _)| group(k) < n) {
                at += 1;
            }
            starts.push(u16::try_from(at).unwrap_or(u16::MAX));
        }
        AttrKeys {
            keys: sorted,
            starts,
        }
    }

    /// How many keys there are.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The slot of `key`, if it is one of the keys.
    #[inline]
    pub fn slot(&self, key: &[u8]) -> Option<usize> {
        let n = key.len().min(GROUPED_LENGTHS);
        let (Some(&from), Some(&to)) = (self.starts.get(n), self.starts.get(n + 1)) else {
            return None;
        };
        self.keys
            .get(usize::from(from)..usize::from(to))?
            .iter()
            .find(|(k, _)| **k == *key)
            .map(|&(_, slot)| slot)
    }
}

#[cfg(test)]
mod tests {
    use super::AttrKeys;

    fn keys(names: &[&[u8]]) -> Vec<Box<[u8]>> {
        names.iter().map(|n| Box::<[u8]>::from(*n)).collect()
    }

    #[test]
    fn finds_every_key_at_its_slot_and_nothing_else() {
        let long_a = vec![b'a'; 70];
        let long_b = vec![b'b'; 90];
        let names: Vec<&[u8]> = vec![
            b"http.route",
            b"url.scheme",
            b"http.request.method",
            b"",
            &long_a,
            b"x",
            &long_b,
            b"rpc.method",
        ];
        let index = AttrKeys::new(&keys(&names));
        for (slot, name) in names.iter().enumerate() {
            assert_eq!(
                index.slot(name),
                Some(slot),
                "{:?}",
                String::from_utf8_lossy(name)
            );
        }
        for other in [
            &b"http.rout"[..],
            b"http.routf",
            b"y",
            b"http.request.methoD",
            &[b'a'; 71],
            &[b'a'; 64],
            &[b'b'; 70],
        ] {
            assert_eq!(
                index.slot(other),
                None,
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
        assert_eq!(AttrKeys::new(&[]).slot(b"http.route"), None);
        assert_eq!(AttrKeys::default().slot(b""), None);
    }
}
