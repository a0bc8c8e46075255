/// Hypervisor CPUID leaves (TLFS 2.4; Linux arch/x86/include/asm/hyperv-tlfs.h,
/// include/asm-generic/hyperv-tlfs.h).
public enum HvCPUID {
    public static let vendorAndMaxFunction: UInt32 = 0x4000_0000
    public static let interface: UInt32 = 0x4000_0001
    public static let version: UInt32 = 0x4000_0002
    public static let features: UInt32 = 0x4000_0003
    public static let enlightenmentInfo: UInt32 = 0x4000_0004
    public static let implementationLimits: UInt32 = 0x4000_0005
    public static let hardwareFeatures: UInt32 = 0x4000_0006
    /// SynthVM reports leaves up to here (0x40000006-0x4000000A are zero).
    public static let maxFunction: UInt32 = 0x4000_000A

    /// "Microsoft Hv" in EBX, ECX, EDX.
    public static let vendorEBX: UInt32 = 0x7263_694D // "Micr"
    public static let vendorECX: UInt32 = 0x666F_736F // "osof"
    public static let vendorEDX: UInt32 = 0x7648_2074 // "t Hv"
    /// "Hv#1" in EAX of 0x40000001.
    public static let interfaceHv1: UInt32 = 0x3123_7648
}

/// 0x40000003.EAX: partition privileges, MSR group (TLFS "HV_PARTITION_PRIVILEGE_MASK" bits 0-31).
public enum HvPrivilegeEAX {
    public static let accessVpRunTimeReg: UInt32 = 1 << 0
    public static let accessPartitionReferenceCounter: UInt32 = 1 << 1
    public static let accessSynicRegs: UInt32 = 1 << 2
    public static let accessSyntheticTimerRegs: UInt32 = 1 << 3
    public static let accessIntrCtrlRegs: UInt32 = 1 << 4
    public static let accessHypercallMsrs: UInt32 = 1 << 5
    public static let accessVpIndex: UInt32 = 1 << 6
    public static let accessResetReg: UInt32 = 1 << 7
    public static let accessStatsReg: UInt32 = 1 << 8
    public static let accessPartitionReferenceTsc: UInt32 = 1 << 9
    public static let accessGuestIdleReg: UInt32 = 1 << 10
    public static let accessFrequencyRegs: UInt32 = 1 << 11
    public static let accessDebugRegs: UInt32 = 1 << 12
    public static let accessReenlightenmentControls: UInt32 = 1 << 13
}

/// 0x40000003.EBX: partition privileges, hypercall group (mask bits 32-63).
public enum HvPrivilegeEBX {
    public static let createPartitions: UInt32 = 1 << 0
    public static let accessPartitionId: UInt32 = 1 << 1
    public static let accessMemoryPool: UInt32 = 1 << 2
    public static let postMessages: UInt32 = 1 << 4
    public static let signalEvents: UInt32 = 1 << 5
    public static let createPort: UInt32 = 1 << 6
    public static let connectPort: UInt32 = 1 << 7
    public static let accessStats: UInt32 = 1 << 8
    public static let debugging: UInt32 = 1 << 11
    public static let cpuManagement: UInt32 = 1 << 12
    public static let enableExtendedHypercalls: UInt32 = 1 << 20
    public static let isolation: UInt32 = 1 << 22
}

/// 0x40000003.EDX: feature identification.
public enum HvFeatureEDX {
    public static let mwaitAvailable: UInt32 = 1 << 0
    public static let guestDebugging: UInt32 = 1 << 1
    public static let performanceMonitor: UInt32 = 1 << 2
    public static let xmmHypercallInput: UInt32 = 1 << 4
    public static let guestIdleState: UInt32 = 1 << 5
    public static let frequencyMsrs: UInt32 = 1 << 8
    public static let guestCrashMsrs: UInt32 = 1 << 10
    public static let xmmHypercallOutput: UInt32 = 1 << 15
    public static let sintPollingMode: UInt32 = 1 << 17
    public static let hypercallMsrLock: UInt32 = 1 << 18
    public static let directSyntheticTimers: UInt32 = 1 << 19
}

/// 0x40000004.EAX: implementation recommendations (hints).
public enum HvHintEAX {
    public static let addressSpaceSwitch: UInt32 = 1 << 0
    public static let localTlbFlush: UInt32 = 1 << 1
    public static let remoteTlbFlush: UInt32 = 1 << 2
    public static let apicMsrs: UInt32 = 1 << 3
    public static let resetMsr: UInt32 = 1 << 4
    public static let relaxedTiming: UInt32 = 1 << 5
    public static let dmaRemapping: UInt32 = 1 << 6
    public static let interruptRemapping: UInt32 = 1 << 7
    public static let deprecateAutoEOI: UInt32 = 1 << 9
    public static let syntheticClusterIpi: UInt32 = 1 << 10
    public static let exProcessorMasks: UInt32 = 1 << 11
    public static let nested: UInt32 = 1 << 12
    public static let enlightenedVmcs: UInt32 = 1 << 14
}
