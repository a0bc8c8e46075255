/// One `PT_NOTE` program header: where its notes are in the file, as the header says (not
/// yet checked against the file).
public struct ElfNoteSegment: Equatable, Sendable {
    /// The program header's index, for error messages.
    public var index: Int
    public var fileOffset: UInt64
    public var fileSize: UInt64
    /// `p_align`: 8 means the notes in it are padded to 8 bytes (e.g. `.note.gnu.property` on
    /// x86-64); anything else, 4 (gABI, "Note Section").
    public var alignment: UInt64
}

/// One ELF note: `{u32 namesz, u32 descsz, u32 type, name (padded), desc (padded)}` (gABI, "Note
/// Section"). Owners define the types: "Xen" notes are XEN_ELFNOTE_* (xen/include/public/elfnote.h),
/// "Linux" notes LINUX_ELFNOTE_* (include/linux/elfnote.h), "GNU" notes NT_GNU_*.
public struct ElfNote: Equatable, Sendable {
    /// The owner's name without its terminating NUL, e.g. "Xen".
    public var name: [UInt8]
    public var type: UInt32
    /// File offsets of the descriptor, inside the file.
    public var descriptor: Range<Int>

    public var nameString: String { String(decoding: name, as: UTF8.self) }
}

extension ElfImage {
    /// Every note of every `PT_NOTE` segment of `bytes`, the file this image was parsed from.
    /// A note that does not fit in its segment is an error; so is a `bytes` that is not that file.
    public func notes(in bytes: [UInt8]) throws(ElfError) -> [ElfNote] {
        var notes: [ElfNote] = []
        let fileSize = UInt64(bytes.count)
        for segment in noteSegments {
            guard segment.fileOffset <= fileSize, segment.fileSize <= fileSize - segment.fileOffset else {
                throw .segmentOutOfFile(index: segment.index)
            }
            // Name and descriptor start on `padding` boundaries counted from the segment start.
            let padding = segment.alignment == 8 ? 8 : 4
            let start = Int(segment.fileOffset)
            func padded(_ offset: Int) -> Int { start + (offset - start + padding - 1) / padding * padding }
            var at = start
            let end = Int(segment.fileOffset + segment.fileSize)
            // Trailing bytes too few for a note header are padding, as binutils treats them.
            while end - at >= 12 {
                // u32 sizes: the sums below stay far inside Int.
                let nameSize = Int(le32(bytes, at))
                let descriptorSize = Int(le32(bytes, at + 4))
                let type = le32(bytes, at + 8)
                let nameStart = at + 12
                let descriptorStart = padded(nameStart + nameSize)
                let next = padded(descriptorStart + descriptorSize)
                guard nameStart + nameSize <= end, descriptorStart + descriptorSize <= end else {
                    throw .malformedNote(index: segment.index, offset: at)
                }
                var name = Array(bytes[nameStart..<(nameStart + nameSize)])
                if name.last == 0 { name.removeLast() }
                notes.append(ElfNote(name: name, type: type, descriptor: descriptorStart..<(descriptorStart + descriptorSize)))
                at = min(next, end)
            }
        }
        return notes
    }
}

/// Little-endian u32 at `offset`; callers have checked `offset + 4 <= bytes.count`.
private func le32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
    UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24
}
