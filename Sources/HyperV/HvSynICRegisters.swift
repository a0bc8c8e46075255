/// Field layouts of the SynIC and synthetic-timer MSRs (TLFS "SynIC MSRs", "Synthetic Timer
/// MSRs"; Linux include/asm-generic/hyperv-tlfs.h `union hv_synic_sint`, `union hv_stimer_config`,
/// `HV_SYNIC_*`). The MSR numbers are in HvMSR.swift.

/// Counts and constants of the SynIC.
public enum HvSynIC {
    /// SINT0...SINT15.
    public static let sintCount = 16
    /// STIMER0...STIMER3 per VP.
    public static let timerCount = 4
    /// What SVERSION reads (`HV_SYNIC_VERSION_1`).
    public static let version: UInt64 = 1
    /// Vectors 0-15 are reserved by the architecture; a SINT may not use them.
    public static let firstValidVector: UInt8 = 16
}

extension HvMSR {
    /// SCONTROL: bit 0 Enable, 63:1 RsvdP. Reset 0.
    public enum SControl {
        /// Message queuing and event flag notifications may be directed at this VP.
        public static let enable: UInt64 = 1 << 0
    }

    /// SIMP and SIEFP (same layout): bits 63:12 page GPA, 11:1 RsvdP, 0 Enable. Reset 0.
    public enum SynICPage {
        public static let enable: UInt64 = 1 << 0
        public static let reservedP: UInt64 = 0xFFE
        public static let pageAddressMask: UInt64 = HvMSR.pageAddressMask
    }

    /// SINTx: bits 7:0 Vector, 15:8 RsvdP, 16 Masked, 17 AutoEOI, 18 Polling, 63:19 RsvdP.
    /// Reset 0x10000 (masked).
    public enum Sint {
        public static let vectorMask: UInt64 = 0xFF
        public static let masked: UInt64 = 1 << 16
        /// The hypervisor EOIs on delivery; the guest's handler must not.
        public static let autoEOI: UInt64 = 1 << 17
        /// Unmasked for delivery, but no interrupt is generated (needs feature EDX bit 17).
        public static let polling: UInt64 = 1 << 18
        /// Bits 15:8 and 63:19: preserved by the guest, stored and ignored by the hypervisor.
        public static let reservedP: UInt64 = 0xFF00 | ~0x7_FFFF
        public static let resetValue: UInt64 = masked

        @inlinable
        public static func vector(_ value: UInt64) -> UInt8 { UInt8(truncatingIfNeeded: value & vectorMask) }
    }

    /// STIMERn_CONFIG: bit 0 Enable, 1 Periodic, 2 Lazy, 3 AutoEnable, 11:4 ApicVector,
    /// 12 DirectMode, 15:13 RsvdZ, 19:16 SINTx, 63:20 RsvdZ. Reset 0.
    public enum STimerConfig {
        public static let enable: UInt64 = 1 << 0
        public static let periodic: UInt64 = 1 << 1
        public static let lazy: UInt64 = 1 << 2
        public static let autoEnable: UInt64 = 1 << 3
        public static let apicVectorShift: UInt64 = 4
        public static let apicVectorMask: UInt64 = 0xFF << apicVectorShift
        /// Assert ApicVector on expiry instead of sending a message (needs feature EDX bit 19).
        public static let directMode: UInt64 = 1 << 12
        public static let sintxShift: UInt64 = 16
        public static let sintxMask: UInt64 = 0xF << sintxShift
        /// Bits 15:13 and 63:20, which must be written as zero.
        public static let reservedZ: UInt64 = ~(0xF_1FFF as UInt64)

        @inlinable
        public static func apicVector(_ value: UInt64) -> UInt8 {
            UInt8(truncatingIfNeeded: (value & apicVectorMask) >> apicVectorShift)
        }

        @inlinable
        public static func sintx(_ value: UInt64) -> Int { Int((value & sintxMask) >> sintxShift) }
    }
}
