import Machine

/// A bzImage as a loader sees one: the boot sector with the setup header at 0x1F1, `setupSects`
/// more sectors of (empty) real-mode setup, then the protected-mode part, whose first 0x200
/// bytes stand for the 32-bit entry and which holds `payload` at `payloadOffset`. Nothing in it
/// executes: SynthVM boots the decompressed payload, never the setup or decompressor code.
public struct SyntheticBzImage {
    public var setupSects: UInt8 = 3
    public var version: UInt16 = 0x020F
    public var loadFlags: UInt8 = 0x01  // LOADED_HIGH
    public var kernelAlignment: UInt32 = 0x20_0000
    public var xloadFlags: UInt16 = 0x0003  // XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G
    public var commandLineSize: UInt32 = 2047
    public var initrdAddressMax: UInt32 = 0x7FFF_FFFF
    public var payloadOffset: UInt32 = 0x3A0
    public var preferredAddress: UInt64 = 0x100_0000
    public var initSize: UInt32 = 0x400_0000
    /// The byte after 0x200 (the jump's displacement): the header ends at 0x202 + this.
    public var jumpLength: UInt8 = 0x6A
    public var payload: [UInt8]

    public init(payload: [UInt8]) {
        self.payload = payload
    }

    public var bytes: [UInt8] {
        let sectors = setupSects == 0 ? 4 : Int(setupSects)
        let protectedMode = (sectors + 1) * 512
        var b = [UInt8](repeating: 0, count: protectedMode + Int(payloadOffset) + payload.count)
        func put(_ value: UInt64, at offset: Int, width: Int) {
            for i in 0..<width { b[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
        }
        b[0x1F1] = setupSects
        put(0xAA55, at: 0x1FE, width: 2)
        b[0x200] = 0xEB
        b[0x201] = jumpLength
        put(0x5372_6448, at: 0x202, width: 4)  // "HdrS"
        put(UInt64(version), at: 0x206, width: 2)
        b[0x211] = loadFlags
        put(UInt64(initrdAddressMax), at: 0x22C, width: 4)
        put(UInt64(kernelAlignment), at: 0x230, width: 4)
        b[0x234] = 1  // relocatable_kernel
        b[0x235] = 21  // min_alignment: 2 MiB
        put(UInt64(xloadFlags), at: 0x236, width: 2)
        put(UInt64(commandLineSize), at: 0x238, width: 4)
        put(UInt64(payloadOffset), at: 0x248, width: 4)
        put(UInt64(payload.count), at: 0x24C, width: 4)
        put(preferredAddress, at: 0x258, width: 8)
        put(UInt64(initSize), at: 0x260, width: 4)
        b.replaceSubrange((protectedMode + Int(payloadOffset))..<b.count, with: payload)
        return b
    }

    /// `elf` compressed in `format` by the system tool and wrapped.
    public static func wrapping(_ elf: [UInt8], format: KernelCompression) throws -> SyntheticBzImage {
        SyntheticBzImage(payload: try CompressedPayload.make(elf, format: format))
    }
}
