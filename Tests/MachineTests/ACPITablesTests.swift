import Foundation
import Testing

@testable import Machine

private func u16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
private func u32(_ b: [UInt8], _ o: Int) -> UInt32 { UInt32(u16(b, o)) | UInt32(u16(b, o + 2)) << 16 }
private func u64(_ b: [UInt8], _ o: Int) -> UInt64 { UInt64(u32(b, o)) | UInt64(u32(b, o + 4)) << 32 }
private func sum(_ b: some Collection<UInt8>) -> UInt8 { b.reduce(0, &+) }
private func ascii(_ b: some Collection<UInt8>) -> String { String(decoding: b, as: UTF8.self) }

@Suite struct ACPITablesTests {
    // MARK: SDT header

    @Test func headerFieldsLengthAndChecksum() {
        let bytes = ACPITable(signature: "TEST", revision: 3, oemRevision: 7, body: [1, 2, 3, 250]).bytes()
        #expect(bytes.count == 40)
        #expect(ascii(bytes[0..<4]) == "TEST")
        #expect(u32(bytes, 4) == 40)
        #expect(bytes[8] == 3)
        #expect(sum(bytes) == 0)
        #expect(ascii(bytes[10..<16]) == "SYNTHV")
        #expect(ascii(bytes[16..<24]) == "SYNTHVM ")
        #expect(u32(bytes, 24) == 7)
        #expect(ascii(bytes[28..<32]) == "SYVM")
        #expect(Array(bytes[36...]) == [1, 2, 3, 250])
    }

    // MARK: MADT

    @Test(arguments: [1, 4, 64])
    func madtEntries(vcpuCount: Int) {
        let madt = MADT.table(vcpuCount: vcpuCount).bytes()
        #expect(ascii(madt[0..<4]) == "APIC")
        #expect(Int(u32(madt, 4)) == madt.count)
        #expect(sum(madt) == 0)
        #expect(u32(madt, 36) == 0xFEE0_0000)
        #expect(u32(madt, 40) == 1)  // PCAT_COMPAT
        var offset = 44
        var entries: [(type: UInt8, bytes: [UInt8])] = []
        while offset < madt.count {
            let length = Int(madt[offset + 1])
            #expect(length >= 2)
            entries.append((madt[offset], Array(madt[offset..<offset + length])))
            offset += length
        }
        #expect(offset == madt.count)
        #expect(entries.count == MADT.entryCount(vcpuCount: vcpuCount))
        let lapics = entries.filter { $0.type == 0 }
        #expect(lapics.count == vcpuCount)
        for (index, lapic) in lapics.enumerated() {
            #expect(lapic.bytes == [0, 8, UInt8(index), UInt8(index), 1, 0, 0, 0])
        }
        let ioapics = entries.filter { $0.type == 1 }
        #expect(ioapics.count == 1)
        #expect(ioapics[0].bytes == [1, 12, UInt8(vcpuCount), 0, 0x00, 0x00, 0xC0, 0xFE, 0, 0, 0, 0])
        let overrides = entries.filter { $0.type == 2 }.map(\.bytes)
        #expect(overrides == [[2, 10, 0, 0, 2, 0, 0, 0, 0, 0], [2, 10, 0, 9, 9, 0, 0, 0, 0x0D, 0]])
        #expect(entries.filter { $0.type == 4 }.map(\.bytes) == [[4, 6, 0xFF, 0, 0, 1]])
    }

    // MARK: RSDP / XSDT

    @Test func rsdpChecksumsAndFields() {
        let rsdp = RSDP.bytes(xsdtAddress: 0x1234_5678_9ABC)
        #expect(rsdp.count == 36)
        #expect(ascii(rsdp[0..<8]) == "RSD PTR ")
        #expect(sum(rsdp[0..<20]) == 0)
        #expect(sum(rsdp) == 0)
        #expect(rsdp[15] == 2)
        #expect(u32(rsdp, 20) == 36)
        #expect(u64(rsdp, 24) == 0x1234_5678_9ABC)
    }

    @Test func xsdtHas64BitPointers() {
        let xsdt = XSDT.table(entries: [0x1_0000_0000, 0xE0100]).bytes()
        #expect(xsdt.count == XSDT.length(entryCount: 2))
        #expect(sum(xsdt) == 0)
        #expect(u64(xsdt, 36) == 0x1_0000_0000)
        #expect(u64(xsdt, 44) == 0xE0100)
    }

    // MARK: FADT / FACS

    @Test func fadtFields() {
        let fadt = FADT.table(dsdtAddress: 0xE0400, facsAddress: 0xE0200).bytes()
        #expect(ascii(fadt[0..<4]) == "FACP")
        #expect(fadt.count == 276 && u32(fadt, 4) == 276)
        #expect(fadt[8] == 6)
        #expect(sum(fadt) == 0)
        // The FACS in FIRMWARE_CTRL only: X_FIRMWARE_CTRL must be zero then (ACPI 6.5, 5.2.9).
        #expect(u32(fadt, 36) == 0xE0200 && u64(fadt, 132) == 0)
        let high = FADT.table(dsdtAddress: 0xE0400, facsAddress: 0x1_0000_0000).bytes()
        #expect(u32(high, 36) == 0 && u64(high, 132) == 0x1_0000_0000)
        #expect(fadt[108] == 0x32)  // CENTURY: the RTC's century register
        #expect(u32(fadt, 40) == 0xE0400 && u64(fadt, 140) == 0xE0400)
        #expect(u16(fadt, 46) == 9)
        #expect(u32(fadt, 48) == 0)  // SMI_CMD
        #expect(u32(fadt, 56) == 0x600 && fadt[88] == 4)
        #expect(u32(fadt, 64) == 0x604 && fadt[89] == 2)
        #expect(u32(fadt, 76) == 0 && fadt[91] == 0)  // no PM timer
        #expect(Array(fadt[148..<160]) == [1, 32, 0, 0, 0x00, 0x06, 0, 0, 0, 0, 0, 0])
        #expect(Array(fadt[172..<184]) == [1, 16, 0, 0, 0x04, 0x06, 0, 0, 0, 0, 0, 0])
        #expect(Array(fadt[116..<128]) == [1, 8, 0, 1, 0xF9, 0x0C, 0, 0, 0, 0, 0, 0])
        #expect(fadt[128] == 6)
        let flags = u32(fadt, 112)
        #expect(flags & FADT.flagResetRegSup != 0)
        #expect(flags & FADT.flagHardwareReduced == 0)
        #expect(u16(fadt, 109) == 0x0F)
    }

    @Test func facsLayout() {
        let facs = FACS.bytes()
        #expect(facs.count == 64)
        #expect(ascii(facs[0..<4]) == "FACS")
        #expect(u32(facs, 4) == 64)
        #expect(facs[32] == 2)
    }

    // MARK: AML

    @Test func packageLengthBoundaries() {
        #expect(AML.encodePackageLength(0) == [0x00])
        #expect(AML.encodePackageLength(63) == [0x3F])
        #expect(AML.encodePackageLength(64) == [0x40, 0x04])
        #expect(AML.encodePackageLength(4095) == [0x4F, 0xFF])
        #expect(AML.encodePackageLength(4096) == [0x80, 0x00, 0x01])
        #expect(AML.encodePackageLength(0xF_FFFF) == [0x8F, 0xFF, 0xFF])
        #expect(AML.encodePackageLength(0x10_0000) == [0xC0, 0x00, 0x00, 0x01])
        #expect(AML.encodePackageLength(AML.maxPackageLength) == [0xCF, 0xFF, 0xFF, 0xFF])
        // The length counts its own bytes.
        #expect(AML.packageLength(contentLength: 62) == [0x3F])  // 63 total, one byte
        #expect(AML.packageLength(contentLength: 63) == AML.encodePackageLength(65))
        #expect(AML.packageLength(contentLength: 4093) == [0x4F, 0xFF])  // 4095 total
        #expect(AML.packageLength(contentLength: 4094) == AML.encodePackageLength(4097))
    }

    @Test func deviceWithLargeBodyUsesLongPkgLength() {
        let big = [UInt8](repeating: 0xA3, count: 5000)  // NoopOp filler
        let device = AML.device("BIG", big)
        #expect(Array(device[0..<2]) == [0x5B, 0x82])
        let length = AML.packageLength(contentLength: 4 + big.count)
        #expect(length.count == 3)
        #expect(Array(device[2..<5]) == length)
        #expect(device.count == 2 + 3 + 4 + 5000)
    }

    @Test func eisaID() {
        #expect(AML.eisaID("PNP0501") == 0x0105_D041)
        #expect(AML.eisaID("PNP0A03") == 0x030A_D041)
    }

    @Test func integersAndNames() {
        #expect(AML.integer(0) == [0x00])
        #expect(AML.integer(1) == [0x01])
        #expect(AML.integer(5) == [0x0A, 5])
        #expect(AML.integer(0x3F8) == [0x0B, 0xF8, 0x03])
        #expect(AML.integer(0x0105_D041) == [0x0C, 0x41, 0xD0, 0x05, 0x01])
        #expect(AML.integer(0x1_0000_0000) == [0x0E, 0, 0, 0, 0, 1, 0, 0, 0])
        #expect(AML.nameString("\\_S5") == [0x5C, 0x5F, 0x53, 0x35, 0x5F])
        #expect(AML.nameString("\\_SB.COM1") == [0x5C, 0x2E] + Array("_SB_COM1".utf8))
        #expect(AML.string("VMBus") == [0x0D] + Array("VMBus".utf8) + [0])
    }

    @Test func s5AndCOM1Encoding() {
        #expect(DSDT.s5 == [0x08, 0x5C, 0x5F, 0x53, 0x35, 0x5F, 0x12, 0x08, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00])
        let crs = AML.resourceTemplate(AML.io(base: 0x3F8, length: 8), AML.irq([4]))
        #expect(crs == [0x11, 0x10, 0x0A, 0x0D,
                        0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08,
                        0x22, 0x10, 0x00,
                        0x79, 0x00])
        let com1 = DSDT.com1
        #expect(Array(com1[0..<2]) == [0x5B, 0x82])
        #expect(Int(com1[2]) == com1.count - 2)  // one-byte PkgLength covering itself and the rest
        #expect(Array(com1[3..<7]) == Array("COM1".utf8))
    }

    // MARK: Layout

    @Test(arguments: [1, 4, 64])
    func layoutPointersResolve(vcpuCount: Int) {
        let base: UInt64 = 0xE0000
        let (rsdp, blob, addresses) = ACPITables.build(vcpuCount: vcpuCount, base: base)
        let (rsdp2, blob2, rsdpAddress) = ACPITables.build(vcpuCount: vcpuCount, at: base)
        #expect(rsdp == rsdp2 && blob == blob2 && rsdpAddress == base && addresses.rsdp == base)
        #expect(Array(blob[0..<36]) == rsdp)
        #expect(base + UInt64(blob.count) <= 0x10_0000)

        func table(at address: UInt64, _ signature: String) -> [UInt8] {
            #expect(address >= base && address < base + UInt64(blob.count), "\(signature) outside the blob")
            let offset = Int(address - base)
            #expect(ascii(blob[offset..<offset + 4]) == signature)
            let length = Int(u32(blob, offset + 4))
            #expect(offset + length <= blob.count)
            return Array(blob[offset..<offset + length])
        }
        #expect(sum(rsdp[0..<20]) == 0 && sum(rsdp) == 0)
        let xsdt = table(at: u64(rsdp, 24), "XSDT")
        #expect(sum(xsdt) == 0)
        #expect((xsdt.count - 36) / 8 == 2)
        let fadt = table(at: u64(xsdt, 36), "FACP")
        let madt = table(at: u64(xsdt, 44), "APIC")
        #expect(sum(fadt) == 0 && sum(madt) == 0)
        #expect(u64(fadt, 140) == addresses.dsdt && UInt64(u32(fadt, 40)) == addresses.dsdt)
        let dsdt = table(at: u64(fadt, 140), "DSDT")
        #expect(sum(dsdt) == 0)
        let facsAddress = UInt64(u32(fadt, 36))
        #expect(facsAddress % 64 == 0 && u64(fadt, 132) == 0)
        let facs = table(at: facsAddress, "FACS")
        #expect(facs == FACS.bytes())
        #expect(madt == MADT.table(vcpuCount: vcpuCount).bytes())
    }

    @Test func vmbusSlotEncoding() {
        // Device(VMBS) { Name(_HID, "VMBus"); Name(_UID, Zero); Name(_STA, 0x0F); Name(_CRS, ResourceTemplate() {}) }
        let slot = DSDT.vmbus()
        let body: [UInt8] = Array("VMBS".utf8)
            + [0x08] + Array("_HID".utf8) + [0x0D] + Array("VMBus".utf8) + [0]
            + [0x08] + Array("_UID".utf8) + [0x00]
            + [0x08] + Array("_STA".utf8) + [0x0A, 0x0F]
            + [0x08] + Array("_CRS".utf8) + [0x11, 0x05, 0x0A, 0x02, 0x79, 0x00]
        #expect(slot == [0x5B, 0x82, UInt8(body.count + 1)] + body)
        // Resources go into the _CRS template, before the end tag.
        let filled = DSDT.vmbus(resources: AML.irq([5]))
        #expect(filled.suffix(7) == [0x0A, 0x05, 0x22, 0x20, 0x00, 0x79, 0x00])
        // The default tables have no VMBus device.
        let dsdt = DSDT.table().bytes()
        #expect(!dsdt.indices.dropLast(3).contains { dsdt[$0..<($0 + 4)].elementsEqual("VMBS".utf8) })
    }

    @Test func extraDevicesLandInSystemBus() {
        let vmbus = AML.device("VMBS", AML.name("_HID", AML.string("VMBus")))
        let plain = DSDT.table().bytes()
        let extended = DSDT.table(extraDevices: [vmbus]).bytes()
        #expect(extended.count >= plain.count + vmbus.count)
        #expect(sum(extended) == 0)
        #expect(extended.suffix(vmbus.count).elementsEqual(vmbus))
    }

    // MARK: Third-party check: acpica-tools' disassembler

    @Test func iaslDisassemblesEveryTable() throws {
        let iasl = ["/usr/bin/iasl", "/usr/local/bin/iasl"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let iasl else {
            Issue.record("iasl not found: install acpica-tools (scripts/install-deps.sh)")
            return
        }
        // The VMBus slot with a placeholder (empty) _CRS, and as the VMBus work may fill it.
        let emptySlot = DSDT.vmbus()
        let filledSlot = AML.device("VMB2", AML.name("_HID", AML.string("VMBus")),
                                    AML.name("_CRS", AML.resourceTemplate(AML.irq([5]))))
        let (_, blob, a) = ACPITables.build(vcpuCount: 4, base: ACPITables.defaultBase, extraDevices: [emptySlot, filledSlot])
        func slice(_ address: UInt64, _ length: Int) -> [UInt8] {
            let offset = Int(address - ACPITables.defaultBase)
            return Array(blob[offset..<offset + length])
        }
        func tableLength(_ address: UInt64) -> Int { Int(u32(slice(address, 8), 4)) }
        // The RSDP is not in the list: iasl -d (20200925, Debian 12) rejects a standalone RSDP
        // binary ("does not contain a valid ACPI table") since it has no SDT header; its
        // checksums are covered by rsdpChecksumsAndFields and layoutPointersResolve.
        let tables: [(String, [UInt8])] = [
            ("xsdt", slice(a.xsdt, tableLength(a.xsdt))),
            ("facp", slice(a.fadt, tableLength(a.fadt))),
            ("facs", slice(a.facs, 64)),
            ("apic", slice(a.madt, tableLength(a.madt))),
            ("dsdt", slice(a.dsdt, tableLength(a.dsdt))),
        ]
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("synthvm-acpi-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        for (name, bytes) in tables {
            let file = directory.appendingPathComponent("\(name).dat")
            try Data(bytes).write(to: file)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: iasl)
            process.arguments = ["-d", file.path]
            process.currentDirectoryURL = directory
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            try process.run()
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "iasl -d \(name): \(output)")
            #expect(!output.contains("Error"), "iasl -d \(name): \(output)")
            let listing = (try? String(contentsOf: directory.appendingPathComponent("\(name).dsl"), encoding: .utf8)) ?? ""
            #expect(!listing.isEmpty, "iasl -d \(name) wrote no listing: \(output)")
            #expect(!listing.contains("Incorrect checksum") && !listing.contains("**** "), "\(name).dsl:\n\(listing)")
            if name == "dsdt" {
                // iasl's reading of the VMBus slot, not only ours.
                let compact = listing.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
                #expect(compact.contains("Device (VMBS)"), "\(listing)")
                #expect(compact.contains("Name (_HID, \"VMBus\")  // _HID: Hardware ID"), "\(listing)")
                #expect(compact.contains("Name (_UID, Zero)  // _UID: Unique ID"), "\(listing)")
                #expect(compact.contains("Name (_STA, 0x0F)  // _STA: Status"), "\(listing)")
                #expect(compact.contains("Name (_CRS, ResourceTemplate ()  // _CRS: Current Resource Settings"), "\(listing)")
            }
        }
    }
}
