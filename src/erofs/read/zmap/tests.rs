use super::*;

const LZ4: u8 = 0;

fn full(entries: &[(u16, u16, [u8; 4])]) -> Vec<u8> {
    entries.iter().flat_map(|(advise, ofs, u)| [&advise.to_le_bytes()[..], &ofs.to_le_bytes(), u].concat()).collect()
}
fn blk(b: u32) -> [u8; 4] {
    b.to_le_bytes()
}
fn deltas(d0: u16, d1: u16) -> [u8; 4] {
    [d0.to_le_bytes(), d1.to_le_bytes()].concat().try_into().unwrap()
}
fn header(advise: u16) -> MapHeader {
    MapHeader::Indexed { advise, algorithms: [LZ4, 0], fragment_offset: 0, idata_size: 0 }
}

fn decode(bytes: &[u8], compact: bool, advise: u16, size: u64) -> Result<Vec<Extent>> {
    let index = Index { blkszbits: 12, compact, advise, start: 32, bytes, size };
    extents(&index, &header(advise), 1, 32 + bytes.len() as u64)
}

/// Two extents in full indexes: a compressed one, then a stored one starting inside lcluster
/// 1 and ending at EOF, with the final index mkfs writes for the EOF lcluster.
#[test]
fn full_indexes_give_extents_front_to_back() {
    let bytes = full(&[(1, 0, blk(5)), (0, 1904, blk(6)), (0, 1808, blk(0))]);
    let got = decode(&bytes, false, 0, 10_000).unwrap();
    assert_eq!(
        got,
        [
            Extent {
                la: 0,
                len: 6000,
                codec: Codec::Algorithm(LZ4),
                source: Source::Blocks { at: 5 << 12, len: 4096 }
            },
            Extent { la: 6000, len: 4000, codec: Codec::Shifted, source: Source::Blocks { at: 6 << 12, len: 4096 } },
        ]
    );
}

/// A big pcluster: the first non-head lcluster counts its blocks (CBLKCNT).
#[test]
fn big_pclusters_and_their_consistency() {
    let big = BIG_PCLUSTER_1 | BIG_PCLUSTER_2;
    let good = [(1, 0, blk(5)), (2, 0, deltas(0x800 | 2, 2)), (2, 0, deltas(2, 1))];
    let got = decode(&full(&good), false, big, 12_288).unwrap();
    assert_eq!(got[0].source, Source::Blocks { at: 5 << 12, len: 8192 });
    assert_eq!(got.len(), 1);

    let mut lookback = good;
    lookback[2].2 = deltas(3, 1);
    let e = decode(&full(&lookback), false, big, 12_288).unwrap_err().to_string();
    assert!(e.contains("looks back 3, past its head at 0"), "{e}");

    let mut misplaced = good;
    misplaced[2].2 = deltas(0x800 | 1, 1);
    let e = decode(&full(&misplaced), false, big, 12_288).unwrap_err().to_string();
    assert!(e.contains("does not follow its head"), "{e}");

    let e = decode(&full(&good), false, 0, 12_288).unwrap_err().to_string();
    assert!(e.contains("without big pclusters"), "{e}");

    let mut not_first = good;
    not_first[0].1 = 7;
    let e = decode(&full(&not_first), false, big, 12_288).unwrap_err().to_string();
    assert!(e.contains("lcluster 0 does not start an extent at 0"), "{e}");

    let mut shared = good;
    shared[0].0 = 1 | PARTIAL_REF;
    assert!(decode(&full(&shared), false, big, 12_288).unwrap_err().to_string().contains("shared pcluster"));
}

/// fsck walks forward by delta[1]: a distance that stops inside the next extent is refused.
#[test]
fn forward_distances_must_reach_the_next_extent() {
    // Extent A spans lclusters 0..=2, B starts in lcluster 3. A distance may land on another
    // non-head lcluster (the walk goes on from there), not past B's head.
    let entries =
        |a: u16, b: u16| full(&[(1, 0, blk(5)), (2, 0, deltas(1, a)), (2, 0, deltas(2, b)), (1, 100, blk(6))]);
    assert_eq!(decode(&entries(2, 1), false, 0, 16_384).unwrap().len(), 2);
    assert_eq!(decode(&entries(1, 1), false, 0, 16_384).unwrap().len(), 2);
    let e = decode(&entries(1, 2), false, 0, 16_384).unwrap_err().to_string();
    assert!(e.contains("forward distance from the extent at 0 ends at 16384, not 12388"), "{e}");
}

/// A compacted 4B pack of two lclusters: types and offsets in 16 bits each, then the block
/// address before the first head (without big pclusters, heads count one block each).
#[test]
fn compacted_4b_pack() {
    let mut pack = Vec::new();
    pack.extend_from_slice(&(1u16 << 12).to_le_bytes());
    pack.extend_from_slice(&((2u16 << 12) | 1).to_le_bytes());
    pack.extend_from_slice(&9u32.to_le_bytes());
    let got = decode(&pack, true, 0, 8192).unwrap();
    assert_eq!(
        got,
        [Extent { la: 0, len: 8192, codec: Codec::Algorithm(LZ4), source: Source::Blocks { at: 10 << 12, len: 4096 } }]
    );
    assert_eq!(index_len(true, 0, 32, 2), 8);
    assert_eq!(index_len(true, COMPACTED_2B, 40, 40), 6 * 4 + 32 * 2 + 2 * 4);
}

#[test]
fn map_headers() {
    let whole = MapHeader::parse(&(1u64 << 63 | 1234).to_le_bytes(), true).unwrap();
    assert_eq!(whole, MapHeader::WholeFragment(1234));
    let mut bytes = [0u8; 8];
    bytes[4] = (INLINE_PCLUSTER | FRAGMENT_PCLUSTER) as u8;
    assert!(MapHeader::parse(&bytes, true).unwrap_err().to_string().contains("both"));
    bytes[4] = COMPACTED_2B as u8;
    assert!(MapHeader::parse(&bytes, false).unwrap_err().to_string().contains("advise"));
    bytes[4] = 0;
    bytes[6] = 0x05;
    assert!(MapHeader::parse(&bytes, true).unwrap_err().to_string().contains("algorithms"));
}
