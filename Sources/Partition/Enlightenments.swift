import HyperV

/// The Hyper-V enlightenments the operator gives the guest (`--hyperv`), in the spirit of QEMU's
/// `hv-*` flags.
///
/// Every bit SynthVM advertises in CPUID 0x40000003/0x40000004 obliges it to implement that
/// feature as the TLFS defines it, and the MSR and hypercall layers decide what a guest may touch
/// from the same bits. So the bits are *derived*, in one place: `Feature.cpuidBits` maps each
/// optional feature to its privilege/feature/hint bits, `Enlightenments.baseBits` holds what every
/// enlightened guest gets, and `privilegesEAX` & co. are their union. Nothing else in SynthVM
/// spells a CPUID bit for a feature.
///
/// Grammar of `parse`:
/// - `off`: no hypervisor leaves at all; every synthetic MSR #GPs.
/// - `base`: only the base interface (hypercall MSRs, VP index), no optional feature.
/// - `default`: the base interface plus `Enlightenments.defaultFeatures`.
/// - a comma list of feature names, optionally starting with `default` or `base`, where
///   `-name` removes a feature named before (e.g. `default,-crash`).
public struct Enlightenments: Equatable, Sendable, CustomStringConvertible {
    /// One optional enlightenment. The raw value is the operator's name for it.
    public enum Feature: String, CaseIterable, Sendable, Comparable {
        /// HV_X64_MSR_VP_RUNTIME (AccessVpRunTimeReg).
        case runtime
        /// TIME_REF_COUNT and the reference TSC page (AccessPartitionReferenceCounter and
        /// AccessPartitionReferenceTsc): the guest's clocksource.
        case time
        /// HV_X64_MSR_RESET (AccessResetReg). The "use the reset MSR to reboot" hint (4) stays
        /// clear: the MSR is there for whoever wants it, SynthVM does not recommend it.
        case reset
        /// TSC_FREQUENCY and APIC_FREQUENCY (AccessFrequencyRegs, and feature EDX bit 8 that
        /// Linux checks before it trusts them).
        case frequencies
        /// CRASH_P0-P4 and CRASH_CTL (feature EDX bit 10, GuestCrashMsrs).
        case crash
        /// Relaxed timing: the guest disables its watchdogs (hint bit 5).
        case relaxed
        /// HvSendSyntheticClusterIpi and its Ex form (hints 10 and 11).
        case ipi
        /// HvPostMessage and HvSignalEvent (privileges EBX bits 4 and 5), VMBus's hypercalls.
        case messages
        /// The SynIC MSRs: SCONTROL, SVERSION, SIEFP, SIMP, EOM, SINT0-15 (AccessSynicRegs, EAX
        /// bit 2). Opt-in until the monitor delivers SINT interrupts.
        case synic
        /// SINT polling mode: SINTx bit 18 unmasks a source without generating interrupts
        /// (feature EDX bit 17). Needs `synic`.
        case synicPolling = "synic-polling"
        /// The four synthetic timers per VP, STIMER0-3_CONFIG/COUNT (AccessSyntheticTimerRegs,
        /// EAX bit 3). Needs `synic` (expiry messages) and `time` (counts are reference time),
        /// as QEMU's hv-stimer does. Opt-in until the monitor arms host timers.
        case stimer
        /// Direct-mode synthetic timers: expiry asserts an APIC vector instead of sending a
        /// message (feature EDX bit 19), what Linux uses for its clockevent. Needs `stimer`.
        case stimerDirect = "stimer-direct"
        /// Fast hypercall input in XMM registers (feature EDX bit 4). Opt-in only, never part of
        /// `default`: this host's instruction emulator cannot run SSE at CPL0, so a guest that
        /// switches to XMM hypercalls because of this bit is not something every host can carry.
        case xmmInput = "xmm-input"

        /// The CPUID bits this feature, and nothing else, contributes.
        public var cpuidBits: CPUIDBits {
            switch self {
            case .runtime:
                CPUIDBits(privilegesEAX: HvPrivilegeEAX.accessVpRunTimeReg)
            case .time:
                CPUIDBits(privilegesEAX: HvPrivilegeEAX.accessPartitionReferenceCounter
                    | HvPrivilegeEAX.accessPartitionReferenceTsc)
            case .reset:
                CPUIDBits(privilegesEAX: HvPrivilegeEAX.accessResetReg)
            case .frequencies:
                CPUIDBits(privilegesEAX: HvPrivilegeEAX.accessFrequencyRegs,
                          featuresEDX: HvFeatureEDX.frequencyMsrs)
            case .crash:
                CPUIDBits(featuresEDX: HvFeatureEDX.guestCrashMsrs)
            case .relaxed:
                CPUIDBits(hintsEAX: HvHintEAX.relaxedTiming)
            case .ipi:
                CPUIDBits(hintsEAX: HvHintEAX.syntheticClusterIpi | HvHintEAX.exProcessorMasks)
            case .messages:
                CPUIDBits(privilegesEBX: HvPrivilegeEBX.postMessages | HvPrivilegeEBX.signalEvents)
            case .synic:
                CPUIDBits(privilegesEAX: HvPrivilegeEAX.accessSynicRegs)
            case .synicPolling:
                CPUIDBits(featuresEDX: HvFeatureEDX.sintPollingMode)
            case .stimer:
                CPUIDBits(privilegesEAX: HvPrivilegeEAX.accessSyntheticTimerRegs)
            case .stimerDirect:
                CPUIDBits(featuresEDX: HvFeatureEDX.directSyntheticTimers)
            case .xmmInput:
                CPUIDBits(featuresEDX: HvFeatureEDX.xmmHypercallInput)
            }
        }

        /// The features this one is meaningless without. `parse` refuses a set that lacks one;
        /// `Enlightenments(features:)` does not check (every combination still behaves: e.g.
        /// message-mode timers without `synic` simply never find a message page).
        public var requires: Set<Feature> {
            switch self {
            case .synicPolling: [.synic]
            case .stimer: [.synic, .time]
            case .stimerDirect: [.stimer]
            default: []
            }
        }

        public static func < (a: Feature, b: Feature) -> Bool {
            allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
        }
    }

    /// A set of bits in the four words of 0x40000003/0x40000004 that enlightenments control.
    public struct CPUIDBits: Equatable, Sendable {
        /// 0x40000003.EAX, partition privileges (MSR group).
        public var privilegesEAX: UInt32
        /// 0x40000003.EBX, partition privileges (hypercall group).
        public var privilegesEBX: UInt32
        /// 0x40000003.EDX, feature identification.
        public var featuresEDX: UInt32
        /// 0x40000004.EAX, implementation recommendations.
        public var hintsEAX: UInt32

        public init(privilegesEAX: UInt32 = 0, privilegesEBX: UInt32 = 0, featuresEDX: UInt32 = 0,
                    hintsEAX: UInt32 = 0) {
            self.privilegesEAX = privilegesEAX
            self.privilegesEBX = privilegesEBX
            self.featuresEDX = featuresEDX
            self.hintsEAX = hintsEAX
        }

        public static let none = CPUIDBits()

        public func union(_ o: CPUIDBits) -> CPUIDBits {
            CPUIDBits(privilegesEAX: privilegesEAX | o.privilegesEAX, privilegesEBX: privilegesEBX | o.privilegesEBX,
                      featuresEDX: featuresEDX | o.featuresEDX, hintsEAX: hintsEAX | o.hintsEAX)
        }

        public func intersects(_ o: CPUIDBits) -> Bool {
            (privilegesEAX & o.privilegesEAX) | (privilegesEBX & o.privilegesEBX)
                | (featuresEDX & o.featuresEDX) | (hintsEAX & o.hintsEAX) != 0
        }
    }

    /// What every enlightened guest gets (TLFS/[REQ] minimum interface): the hypercall MSRs
    /// (GUEST_OS_ID, HYPERCALL) and VP_INDEX, which "Hv#1" itself promises, and hint 9
    /// (deprecate AutoEOI), because a user-space SynIC cannot provide AutoEOI against KVM's
    /// in-kernel LAPIC: with the hint, Linux programs its SINTs without AutoEOI and EOIs itself.
    /// HypercallMsrLock (feature EDX bit 18) is part of it too: the HYPERCALL Locked bit is
    /// implemented, and a guest must be told so before it relies on it.
    public static let baseBits = CPUIDBits(
        privilegesEAX: HvPrivilegeEAX.accessHypercallMsrs | HvPrivilegeEAX.accessVpIndex,
        featuresEDX: HvFeatureEDX.hypercallMsrLock,
        hintsEAX: HvHintEAX.deprecateAutoEOI)

    /// 0x40000004.EBX when enlightened: never notify on long spin waits (HvNotifyLongSpinWait is
    /// not worth a VM exit; 0xFFFFFFFF is QEMU's default too).
    public static let spinlockRetriesNever: UInt32 = 0xFFFF_FFFF

    /// What `default` names: everything SynthVM implements except two opt-ins: `xmm-input`
    /// (XMM registers as hypercall input: every such call costs a KVM_GET_FPU, and this host's
    /// emulator cannot run the guest's SSE code anyway) and `synic-polling` (SINT polling mode,
    /// which KVM does not advertise either). The SynIC and the synthetic timers, with direct
    /// mode, are in: with the SynIC the router worker runs (docs/processes.md).
    public static let defaultFeatures: Set<Feature> = [
        .runtime, .time, .reset, .frequencies, .crash, .relaxed, .ipi, .messages, .synic, .stimer, .stimerDirect,
    ]

    /// True for `off`: no hypervisor CPUID leaves, no synthetic MSRs, no hypercalls.
    public let isOff: Bool
    /// The optional features on top of the base interface (empty when off).
    public let features: Set<Feature>
    /// Every bit this set advertises: base plus each feature's bits, or nothing when off.
    /// Derived once here from the table, because the MSR and hypercall paths consult it on
    /// every exit.
    public let cpuidBits: CPUIDBits

    private init(isOff: Bool, features: Set<Feature>) {
        self.isOff = isOff
        self.features = isOff ? [] : features
        cpuidBits = isOff ? .none : features.reduce(Self.baseBits) { $0.union($1.cpuidBits) }
    }

    /// The base interface plus `features`.
    public init(features: Set<Feature>) {
        self.init(isOff: false, features: features)
    }

    public static let off = Enlightenments(isOff: true, features: [])
    public static let base = Enlightenments(features: [])
    public static let `default` = Enlightenments(features: defaultFeatures)

    public func has(_ feature: Feature) -> Bool { features.contains(feature) }

    /// The first feature (in table order) that lacks one of the features it `requires`, and the
    /// missing one; nil when every dependency is there.
    public var missingDependency: (feature: Feature, needs: Feature)? {
        for f in features.sorted() {
            if let needed = f.requires.sorted().first(where: { !features.contains($0) }) { return (f, needed) }
        }
        return nil
    }

    // MARK: Derived CPUID bits

    /// 0x40000003.EAX.
    public var privilegesEAX: UInt32 { cpuidBits.privilegesEAX }
    /// 0x40000003.EBX.
    public var privilegesEBX: UInt32 { cpuidBits.privilegesEBX }
    /// 0x40000003.EDX.
    public var featuresEDX: UInt32 { cpuidBits.featuresEDX }
    /// 0x40000004.EAX.
    public var hintsEAX: UInt32 { cpuidBits.hintsEAX }

    // MARK: Names

    /// The enabled features' names in table order (empty for `off` and `base`).
    public var names: [String] { features.sorted().map(\.rawValue) }

    /// `off`, `base`, or the comma list of names; `parse(description)` gives this value back.
    public var description: String {
        if isOff { return "off" }
        if features.isEmpty { return "base" }
        return names.joined(separator: ",")
    }

    // MARK: Parsing

    /// Parses the operator's `--hyperv` text (see the type's grammar). Items may have spaces
    /// around them; names are case-sensitive.
    public static func parse(_ text: String) throws(EnlightenmentsError) -> Enlightenments {
        let items = text.split(separator: ",", omittingEmptySubsequences: false).map { trimmed($0) }
        if items.count == 1 && items[0].isEmpty { throw .empty }
        for (i, item) in items.enumerated() where item.isEmpty { throw .emptyItem(position: i + 1) }

        if items.contains("off") {
            guard items.count == 1 else { throw .offNotAlone }
            return .off
        }

        var features: Set<Feature> = []
        var named: Set<String> = []
        for (i, item) in items.enumerated() {
            if item == "default" || item == "base" {
                guard i == 0 else { throw .setNotFirst(item) }
                if item == "default" { features = defaultFeatures }
                named.insert(item)
                continue
            }
            let removing = item.hasPrefix("-")
            let name = removing ? String(item.dropFirst()) : item
            guard let feature = Feature(rawValue: name) else { throw .unknownName(name) }
            guard !named.contains(item) else { throw .duplicate(item) }
            named.insert(item)
            if removing {
                guard features.remove(feature) != nil else { throw .removesNothing(name) }
            } else {
                guard features.insert(feature).inserted else { throw .duplicate(name) }
            }
        }
        let result = Enlightenments(features: features)
        if let (feature, needed) = result.missingDependency {
            throw .missingDependency(feature: feature.rawValue, needs: needed.rawValue)
        }
        return result
    }

    private static func trimmed(_ s: Substring) -> String {
        var t = s[...]
        while let c = t.first, c == " " || c == "\t" { t = t.dropFirst() }
        while let c = t.last, c == " " || c == "\t" { t = t.dropLast() }
        return String(t)
    }
}

/// Why `Enlightenments.parse` rejected its text. The description names the offending item.
public enum EnlightenmentsError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The whole text was empty.
    case empty
    /// An empty item between commas (1-based position).
    case emptyItem(position: Int)
    /// A name that is not `off`, `base`, `default` or a feature.
    case unknownName(String)
    /// A name given twice, or a feature `default` already includes.
    case duplicate(String)
    /// `-name` for a feature that was not enabled at that point.
    case removesNothing(String)
    /// `off` combined with anything else.
    case offNotAlone
    /// `default` or `base` anywhere but first.
    case setNotFirst(String)
    /// A feature named without one it requires (`Enlightenments.Feature.requires`).
    case missingDependency(feature: String, needs: String)

    public var description: String {
        let known = "off, base, default, " + Enlightenments.Feature.allCases.map(\.rawValue).joined(separator: ", ")
        switch self {
        case .empty:
            return "empty enlightenment list (use off, base, default or a comma list of: \(known))"
        case .emptyItem(let position):
            return "empty item at position \(position) in the enlightenment list"
        case .unknownName(let name):
            return "unknown enlightenment '\(name)' (known: \(known))"
        case .duplicate(let name):
            return "enlightenment '\(name)' is named twice (or already included by default)"
        case .removesNothing(let name):
            return "'-\(name)' removes nothing: '\(name)' is not enabled at that point"
        case .offNotAlone:
            return "'off' cannot be combined with other enlightenments"
        case .setNotFirst(let name):
            return "'\(name)' must be the first item of the enlightenment list"
        case .missingDependency(let feature, let needed):
            return "enlightenment '\(feature)' needs '\(needed)'"
        }
    }
}
