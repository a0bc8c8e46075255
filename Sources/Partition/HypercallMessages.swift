import HyperV

/// HvCallPostMessage (0x005C): queue a message for the port behind a connection. The input is
/// checked here (`HvPostMessageInput.parse`); where it goes is `HypercallConnections`' business,
/// and until the SynIC router exists there is nowhere, so a valid message answers
/// HV_STATUS_INVALID_CONNECTION_ID (what QEMU answers for an unknown connection).
///
/// | case | status | source |
/// |---|---|---|
/// | privilege PostMessages (0x40000003.EBX bit 4) clear | ACCESS_DENIED | TLFS, KVM |
/// | fast bit set | INVALID_HYPERCALL_CODE | QEMU (KVM hands the call to user space; 256 bytes never fit in registers) |
/// | input GPA misaligned, 256-byte block crosses a page, or not RAM | INVALID_ALIGNMENT | TLFS |
/// | ConnectionId bits 31:24 or the RsvdZ word non-zero | INVALID_HYPERCALL_INPUT | KVM's answer for RsvdZ input fields |
/// | MessageType 0 or bit 31 set; PayloadSize > 240 | INVALID_PARAMETER | TLFS |
/// | no such connection | INVALID_CONNECTION_ID | TLFS, QEMU |
enum HypercallPostMessage: HypercallHandler {
    static let code = HvCallCode.postMessage

    static func accessStatus(_ context: HypercallContext) -> HvStatus? {
        context.privilegesEBX & HvPrivilegeEBX.postMessages != 0 ? nil : .accessDenied
    }

    static var fastRefusal: HvStatus? { .invalidHypercallCode }

    static func inputSize(_ control: HvHypercallControl) -> Int { HvPostMessageInput.size }

    static func handle(_ input: HypercallInputBlock, control: HvHypercallControl, context: HypercallContext) -> HvStatus {
        switch HvPostMessageInput.parse(input.bytes) {
        case .failure(let status):
            return status
        case .success(let message):
            return context.connections.postMessage(message, fromVP: context.vp) ?? .invalidConnectionID
        }
    }
}

/// HvCallSignalEvent (0x005D): set an event flag in the port behind a connection. Linux calls it
/// fast with the quadword in RDX; the memory-based form (quadword at the input GPA) is accepted
/// too, as KVM and QEMU accept it.
///
/// | case | status | source |
/// |---|---|---|
/// | privilege SignalEvents (0x40000003.EBX bit 5) clear | ACCESS_DENIED | TLFS, KVM |
/// | memory-based: GPA misaligned, crosses a page, or not RAM | INVALID_ALIGNMENT | TLFS, KVM |
/// | bits 31:24 or 63:48 of the quadword set | INVALID_HYPERCALL_INPUT | KVM |
/// | no such connection | INVALID_CONNECTION_ID | TLFS, QEMU |
/// | FlagNumber >= the port's flag count | INVALID_PARAMETER, from the connection | TLFS |
///
/// KVM answers INVALID_PORT_ID for any non-zero FlagNumber (it only supports flag 0); the TLFS
/// makes the flag relative to the port, so the check belongs to the connection, which knows
/// the port's flag count (at most `HvSignalEventInput.flagsPerSint`).
enum HypercallSignalEvent: HypercallHandler {
    static let code = HvCallCode.signalEvent

    static func accessStatus(_ context: HypercallContext) -> HvStatus? {
        context.privilegesEBX & HvPrivilegeEBX.signalEvents != 0 ? nil : .accessDenied
    }

    static func inputSize(_ control: HvHypercallControl) -> Int { HvSignalEventInput.size }

    static func handle(_ input: HypercallInputBlock, control: HvHypercallControl, context: HypercallContext) -> HvStatus {
        switch HvSignalEventInput.parse(input.u64(at: 0)) {
        case .failure(let status):
            return status
        case .success(let event):
            return context.connections.signalEvent(event, fromVP: context.vp) ?? .invalidConnectionID
        }
    }
}
