import Testing

@testable import Machine

/// Leaves 1, 7.0 and 0xD.0 as a guest sees them on the development host (a PVM host on an AMD
/// EPYC): the host's values, not SynthVM's table.
private let pvmGuestView = [
    CPUIDEntry(function: 1, eax: 0x00A1_0F11, ebx: 0x0001_0800, ecx: 0xF7F8_3203, edx: 0x178B_FBFF),
    CPUIDEntry(function: 7, index: 0, eax: 1, ebx: 0xF1BF_03AB, ecx: 0x0000_5F46, edx: 0x0000_0010),
    CPUIDEntry(function: 0xD, index: 0, eax: 0xE7, ebx: 0x240, ecx: 0x980),
]

@Suite struct LinuxPVMProfileTests {
    @Test("the development host's guest view gives the issue's list, derived bit by bit")
    func developmentHost() {
        let options = LinuxPVMProfile.commandLineAdditions(guestCPUID: pvmGuestView)
        #expect(options == ["noxsave",
                            "clearcpuid=pni,pclmulqdq,ssse3,cx16,sse4_1,sse4_2,popcnt,aes,erms,smap,sha_ni,gfni,fsrm"])
        #expect(options[1].count - "clearcpuid=".count <= LinuxPVMProfile.clearCPUIDLimit)
    }

    @Test("each option appears exactly when its feature bit is visible", arguments: LinuxPVMProfile.clearedFeatures)
    func eachFeature(feature: LinuxPVMProfile.Feature) {
        var entries = [CPUIDEntry(function: 1), CPUIDEntry(function: 7)]
        let i = feature.leaf == 1 ? 0 : 1
        switch feature.register {
        case .eax: entries[i].eax = 1 << feature.bit
        case .ebx: entries[i].ebx = 1 << feature.bit
        case .ecx: entries[i].ecx = 1 << feature.bit
        case .edx: entries[i].edx = 1 << feature.bit
        }
        #expect(LinuxPVMProfile.commandLineAdditions(guestCPUID: entries) == ["clearcpuid=\(feature.name)"])
        // Removing that bit from the development host's view removes exactly that name.
        var view = pvmGuestView
        let j = view.firstIndex { $0.function == feature.leaf && $0.index == feature.subleaf }!
        switch feature.register {
        case .eax: view[j].eax &= ~(1 << feature.bit)
        case .ebx: view[j].ebx &= ~(1 << feature.bit)
        case .ecx: view[j].ecx &= ~(1 << feature.bit)
        case .edx: view[j].edx &= ~(1 << feature.bit)
        }
        let list = LinuxPVMProfile.commandLineAdditions(guestCPUID: view).last!.dropFirst("clearcpuid=".count)
        #expect(!list.split(separator: ",").contains(Substring(feature.name)))
        #expect(list.split(separator: ",").count == LinuxPVMProfile.clearedFeatures.count - 1)
    }

    @Test("no visible feature, no option; noxsave follows XSAVE alone")
    func nothingVisible() {
        #expect(LinuxPVMProfile.commandLineAdditions(guestCPUID: []) == [])
        #expect(LinuxPVMProfile.commandLineAdditions(guestCPUID: [CPUIDEntry(function: 1, ecx: 1 << 31)]) == [])
        #expect(LinuxPVMProfile.commandLineAdditions(guestCPUID: [CPUIDEntry(function: 1, ecx: 1 << 26)]) == ["noxsave"])
        // A feature in the wrong subleaf does not count.
        #expect(LinuxPVMProfile.commandLineAdditions(guestCPUID: [CPUIDEntry(function: 7, index: 1, ebx: 1 << 9)]) == [])
    }

    @Test("merging: appended once, an operator's clearcpuid= is extended in place")
    func merge() {
        let add = ["noxsave", "clearcpuid=cx16,popcnt"]
        #expect(LinuxPVMProfile.merge(add, into: "") == "noxsave clearcpuid=cx16,popcnt")
        #expect(LinuxPVMProfile.merge(add, into: "console=ttyS0") == "console=ttyS0 noxsave clearcpuid=cx16,popcnt")
        #expect(LinuxPVMProfile.merge(add, into: "noxsave  quiet") == "noxsave quiet clearcpuid=cx16,popcnt")
        #expect(LinuxPVMProfile.merge(add, into: "clearcpuid=popcnt,avx quiet") == "clearcpuid=popcnt,avx,cx16 quiet noxsave")
        #expect(LinuxPVMProfile.merge([], into: "a b") == "a b")
    }
}
