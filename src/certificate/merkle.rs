//! RFC 6962 (Certificate Transparency) Merkle tree hashing.
//!
//! The certificate signs the root of a Merkle tree whose leaves are the
//! manifest's lines. [`RootBuilder`] computes that root in one streaming pass
//! with memory logarithmic in the number of leaves, so a million-line manifest
//! never has to be held. [`root_from_inclusion_proof`] is the auditor's side:
//! it recomputes the root from one leaf and its audit path.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// `SHA-256(0x00 || data)`: the hash of a leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Streaming computation of the RFC 6962 tree head.
///
/// The builder keeps one hash per complete subtree on the left edge (a binary
/// counter): pushing a leaf merges equal-sized subtrees, and `root` folds the
/// remaining ones right to left, which is exactly how RFC 6962 splits a tree
/// of any size at its largest power of two.
#[derive(Debug, Default, Clone)]
pub struct RootBuilder {
    /// `(height, hash)` of complete subtrees, largest first.
    stack: Vec<(u32, Hash)>,
    leaves: u64,
}

impl RootBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push_leaf_data(&mut self, data: &[u8]) {
        self.push_leaf_hash(leaf_hash(data));
    }

    pub fn push_leaf_hash(&mut self, hash: Hash) {
        let mut node = (0u32, hash);
        while let Some(&(height, left)) = self.stack.last() {
            if height != node.0 {
                break;
            }
            self.stack.pop();
            node = (height + 1, node_hash(&left, &node.1));
        }
        self.stack.push(node);
        self.leaves += 1;
    }

    pub fn leaves(&self) -> u64 {
        self.leaves
    }

    pub fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else {
            return empty_root();
        };
        for (_, left) in iter {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// The RFC 6962 tree head of `leaves` (leaf hashes), computed recursively.
fn subtree_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = largest_power_of_two_below(n);
            node_hash(&subtree_root(&leaves[..k]), &subtree_root(&leaves[k..]))
        }
    }
}

fn largest_power_of_two_below(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The audit path of leaf `index` (RFC 6962 §2.1.1 PATH): the sibling
/// hashes from the leaf up to the root, which prove the leaf is in the tree
/// without revealing any other leaf.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    let (mut lo, mut hi, mut m) = (0usize, leaves.len(), index);
    let mut path = Vec::new();
    while hi - lo > 1 {
        let k = largest_power_of_two_below(hi - lo);
        if m < k {
            path.push(subtree_root(&leaves[lo + k..hi]));
            hi = lo + k;
        } else {
            path.push(subtree_root(&leaves[lo..lo + k]));
            lo += k;
            m -= k;
        }
    }
    // PATH lists siblings from the leaf upwards; the descent found them top-down.
    while let Some(h) = path.pop() {
        proof.push(h);
    }
    Some(proof)
}

/// Why an inclusion proof was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("the proof has {got} hashes, a tree of this size needs {want}")]
    WrongLength { got: usize, want: usize },
    #[error("the proof does not lead to the signed root")]
    RootMismatch,
    #[error("a hash is {0} bytes long, not 32")]
    BadHashLength(usize),
}

fn to_hash(bytes: &[u8]) -> Result<Hash, ProofError> {
    bytes
        .try_into()
        .map_err(|_| ProofError::BadHashLength(bytes.len()))
}

/// [`verify_inclusion`] on hashes of unchecked length (as decoded from a proof file).
pub fn verify_inclusion_bytes(
    index: u64,
    size: u64,
    leaf: &[u8],
    proof: &[Vec<u8>],
    root: &[u8],
) -> Result<(), ProofError> {
    let proof = proof
        .iter()
        .map(|p| to_hash(p))
        .collect::<Result<Vec<_>, _>>()?;
    verify_inclusion(index, size, &to_hash(leaf)?, &proof, &to_hash(root)?)
}

/// Recomputes the root from a leaf hash and its audit path (RFC 9162 §2.1.3.2)
/// and compares it with `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if &root_from_inclusion_proof(index, size, leaf, proof)? == root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// The root an inclusion proof leads to.
pub fn root_from_inclusion_proof(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // The path splits into an "inner" part, where index and size-1 differ,
    // and a "border" part along the right edge of the tree.
    let inner = (64 - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = (index >> inner).count_ones() as usize;
    if proof.len() != inner + border {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want: inner + border,
        });
    }
    let mut acc = *leaf;
    for (i, sibling) in proof[..inner].iter().enumerate() {
        acc = if (index >> i) & 1 == 0 {
            node_hash(&acc, sibling)
        } else {
            node_hash(sibling, &acc)
        };
    }
    for sibling in &proof[inner..] {
        acc = node_hash(sibling, &acc);
    }
    Ok(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference definition (RFC 6962 §2.1), recursive and slow.
    fn reference_root(leaves: &[Vec<u8>]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaf_hash(&leaves[0]),
            n => {
                // k is the largest power of two smaller than n.
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    fn ct_leaves() -> Vec<Vec<u8>> {
        // The eight inputs of the certificate-transparency reference tests.
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|h| hex::decode(h).unwrap())
        .collect()
    }

    #[test]
    fn known_root_of_eight_leaves() {
        let mut b = RootBuilder::new();
        for leaf in ct_leaves() {
            b.push_leaf_data(&leaf);
        }
        assert_eq!(
            hex::encode(b.root()),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
    }

    #[test]
    fn streaming_root_agrees_with_reference_for_every_size() {
        let leaves: Vec<Vec<u8>> = (0..70u32).map(|i| i.to_be_bytes().to_vec()).collect();
        for n in 0..leaves.len() {
            let mut b = RootBuilder::new();
            for leaf in &leaves[..n] {
                b.push_leaf_data(leaf);
            }
            assert_eq!(b.root(), reference_root(&leaves[..n]), "size {n}");
        }
    }

    #[test]
    fn every_leaf_of_every_size_proves_against_the_streaming_root() {
        for n in 1..40u32 {
            let data: Vec<Vec<u8>> = (0..n).map(|i| i.to_le_bytes().to_vec()).collect();
            let hashes: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
            let mut b = RootBuilder::new();
            data.iter().for_each(|d| b.push_leaf_data(d));
            let root = b.root();
            for i in 0..n as usize {
                let proof = inclusion_proof(&hashes, i).unwrap();
                assert_eq!(
                    verify_inclusion(i as u64, n as u64, &hashes[i], &proof, &root),
                    Ok(()),
                    "leaf {i} of {n}"
                );
                // The proof is for this leaf only.
                let other = leaf_hash(b"another leaf");
                assert!(verify_inclusion(i as u64, n as u64, &other, &proof, &root).is_err());
            }
        }
        assert!(inclusion_proof(&[], 0).is_none());
    }

    #[test]
    fn empty_tree_root() {
        assert_eq!(
            hex::encode(RootBuilder::new().root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
