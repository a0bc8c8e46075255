/// The host side of the vstor protocol on one SCSI controller (storvsp): packets in, decisions
/// out. Pure: no I/O, no clocks; the storage worker feeds it each guest-to-host packet's payload
/// (the bytes at offset8 * 8) with the packet's transaction id, sends the replies it returns, and
/// runs the SRBs it hands out.
///
/// Order of decisions for one packet (OpenVMM storvsp `parse_packet`, `process_primary`,
/// `handle_packet`; Linux storvsc_drv.c `storvsc_channel_init`, `storvsc_execute_vstor_op`):
/// 1. Fewer than 12 bytes (no operation): COMPLETE_IO with STATUS_INVALID_PARAMETER. (OpenVMM
///    stops the channel; a reply keeps a confused guest's request from hanging forever.)
/// 2. During initialization (`InitState`), only the next step's operation is accepted; any other
///    gets STATUS_INVALID_DEVICE_STATE, which Linux treats as a failed probe (it checks op == 1
///    and status == 0), and the state does not move. QUERY_PROTOCOL_VERSION with a version this
///    host does not accept gets STATUS_REVISION_MISMATCH (the version echoed) and the guest
///    tries its next one.
/// 3. When ready: EXECUTE_SRB is parsed into a `VStorSRB` (or refused with an SRB status, below);
///    RESET_LUN/ADAPTER/BUS succeed (no-ops, as OpenVMM); CREATE_SUB_CHANNELS on the primary
///    channel grows the sub-channel count within the limit; anything else gets
///    STATUS_INVALID_DEVICE_STATE (unknown operations STATUS_INVALID_PARAMETER).
/// 4. An EXECUTE_SRB that cannot be run (shorter than the SRB, cdb_length 0 or > 16, data_in > 2,
///    a buffer over the transfer limit) is completed at once with SRB_STATUS_INVALID_REQUEST |
///    AUTOSENSE_VALID, CHECK CONDITION, ILLEGAL REQUEST / INVALID FIELD IN CDB: Linux's midlayer
///    then fails that command without retrying it.
///
/// Reply sizes: Linux copies at most 64 bytes and drops a reply shorter than the packet it
/// expects; Windows expects exactly the version's size. Before a version is agreed, the reply is
/// the request's size clamped to 48...64 (OpenVMM: 12 + min(request - 12, 0x34), "what Hyper-V
/// does, and Linux 6.1 relies on it"); after, always 12 + the version's SRB size.
public struct VStorProtocol: Sendable {
    public struct Configuration: Hashable, Sendable {
        /// The newest version accepted; newer ones get REVISION_MISMATCH, so a guest can be made
        /// to negotiate an older one (0x0600, 0x0501, ...).
        public var highestVersion: VStorProtocolVersion
        /// Sub-channels the guest may ask for (QUERY_PROPERTIES max_channel_cnt). 0 turns
        /// multi-channel off (flags 0), which is what Linux needs for one queue.
        public var maxSubChannels: UInt16
        /// QUERY_PROPERTIES max_transfer_bytes, and the largest SRB buffer accepted. A multiple of
        /// 4096, at least 4096.
        public var maxTransferBytes: UInt32

        public init(highestVersion: VStorProtocolVersion = .win10, maxSubChannels: UInt16 = 0,
                    maxTransferBytes: UInt32 = 0x10_0000) {
            self.highestVersion = highestVersion
            self.maxSubChannels = maxSubChannels
            self.maxTransferBytes = maxTransferBytes
        }

        public var isValid: Bool {
            highestVersion.isAccepted && maxTransferBytes >= 4096 && maxTransferBytes % 4096 == 0
        }
    }

    /// Where the handshake is (OpenVMM storvsp `InitState` plus `Ready`).
    public enum InitState: Hashable, Sendable {
        /// Waiting for BEGIN_INITIALIZATION.
        case beginInitialization
        /// Waiting for QUERY_PROTOCOL_VERSION (repeated until one is accepted).
        case queryVersion
        /// Waiting for QUERY_PROPERTIES.
        case queryProperties(VStorProtocolVersion)
        /// Waiting for END_INITIALIZATION; `subChannels` is nil while CREATE_SUB_CHANNELS may
        /// still come (multi-channel offered), else the count.
        case endInitialization(VStorProtocolVersion, subChannels: UInt16?)
        /// SRBs are served.
        case ready(VStorProtocolVersion, subChannels: UInt16)

        public var version: VStorProtocolVersion? {
            switch self {
            case .beginInitialization, .queryVersion: nil
            case .queryProperties(let v), .endInitialization(let v, _), .ready(let v, _): v
            }
        }
    }

    /// What to do with one packet.
    public enum Decision: Hashable, Sendable {
        /// Send this completion packet (VM_PKT_COMP, the request's transaction id).
        case reply(VStorReply)
        /// Run this SRB (after checking its buffer: `VStorDataBufferCheck`), then send
        /// `completion(for:result:)`.
        case execute(VStorSRB)
        /// Send `reply`, then offer sub-channels until there are `total` (indices 1...total);
        /// those up to the previous count exist already.
        case createSubChannels(VStorReply, total: UInt16)
        /// Nothing to send: a packet that asks for no answer (a completion from the guest).
        case ignore
    }

    public let configuration: Configuration
    public internal(set) var state: InitState

    public init(configuration: Configuration) {
        precondition(configuration.isValid, "VStorProtocol.Configuration out of range")
        self.configuration = configuration
        state = .beginInitialization
    }

    /// The channel closed (the guest unloads or reprobes): back to the start of the handshake.
    public mutating func reset() { state = .beginInitialization }

    public var isReady: Bool { if case .ready = state { true } else { false } }

    /// One guest-to-host packet. `isCompletion`: the VMBus packet type was VM_PKT_COMP (the
    /// guest never owes this host one). `onSubChannel`: it came on a sub-channel, where only
    /// SRBs (and resets) are served.
    public mutating func handle(transactionID: UInt64, payload: UnsafeRawBufferPointer,
                                isCompletion: Bool = false, onSubChannel: Bool = false) -> Decision {
        if isCompletion { return .ignore }
        let size = replySize(requestCount: payload.count)
        guard payload.count >= VStorPacket.headerSize else {
            return .reply(Self.reply(transactionID, size: size, status: .invalidParameter))
        }
        let op = VStorOperation(rawValue: load32(payload, VStorPacket.operationOffset))
        guard (VStorOperation.executeSRB.rawValue...VStorOperation.queryProperties.rawValue).contains(op.rawValue)
                || op == .createSubChannels else {
            return .reply(Self.reply(transactionID, size: size, status: .invalidParameter))
        }
        let wrongState = Decision.reply(Self.reply(transactionID, size: size, status: .invalidDeviceState))
        if onSubChannel {
            guard case .ready(let version, _) = state else { return wrongState }
            return handleReady(op, transactionID, payload, version: version, primary: false)
        }
        switch state {
        case .beginInitialization:
            guard op == .beginInitialization else { return wrongState }
            state = .queryVersion
            return .reply(Self.reply(transactionID, size: size, status: .success))
        case .queryVersion:
            guard op == .queryProtocolVersion else { return wrongState }
            guard payload.count >= VStorPacket.versionOffset + 2 else {
                return .reply(Self.reply(transactionID, size: size, status: .invalidParameter))
            }
            let asked = VStorProtocolVersion(rawValue: load16(payload, VStorPacket.versionOffset))
            var r = Self.reply(transactionID, size: size, status: .success)
            r.packet.put16(asked.rawValue, at: VStorPacket.versionOffset)
            guard asked.isAccepted, asked <= configuration.highestVersion else {
                r.packet.put32(VStorStatus.revisionMismatch.rawValue, at: VStorPacket.statusOffset)
                return .reply(r)
            }
            state = .queryProperties(asked)
            return .reply(r)
        case .queryProperties(let version):
            guard op == .queryProperties else { return wrongState }
            let p = properties(at: version)
            var r = Self.reply(transactionID, size: size, status: .success)
            r.packet.put16(p.maxChannelCount, at: VStorChannelProperties.maxChannelCountOffset)
            r.packet.put32(p.flags, at: VStorChannelProperties.flagsOffset)
            r.packet.put32(p.maxTransferBytes, at: VStorChannelProperties.maxTransferBytesOffset)
            state = .endInitialization(version, subChannels: p.flags & VStorChannelProperties.supportsMultiChannel != 0 ? nil : 0)
            return .reply(r)
        case .endInitialization(let version, let subChannels):
            switch op {
            case .endInitialization:
                state = .ready(version, subChannels: subChannels ?? 0)
                return .reply(Self.reply(transactionID, size: size, status: .success))
            case .createSubChannels where subChannels == nil:
                guard let n = subChannelCount(payload), n <= configuration.maxSubChannels else {
                    return .reply(Self.reply(transactionID, size: size, status: .invalidParameter))
                }
                state = .endInitialization(version, subChannels: n)
                return .createSubChannels(Self.reply(transactionID, size: size, status: .success), total: n)
            default:
                return wrongState
            }
        case .ready(let version, _):
            return handleReady(op, transactionID, payload, version: version, primary: true)
        }
    }

    /// `handle` for a packet already in an array.
    public mutating func handle(transactionID: UInt64, payload: [UInt8], isCompletion: Bool = false,
                                onSubChannel: Bool = false) -> Decision {
        payload.withUnsafeBytes { handle(transactionID: transactionID, payload: $0, isCompletion: isCompletion, onSubChannel: onSubChannel) }
    }

    private mutating func handleReady(_ op: VStorOperation, _ transactionID: UInt64, _ payload: UnsafeRawBufferPointer,
                                      version: VStorProtocolVersion, primary: Bool) -> Decision {
        let size = VStorPacket.headerSize + version.srbSize
        switch op {
        case .executeSRB:
            return parseSRB(transactionID, payload, version: version)
        case .resetLUN, .resetAdapter, .resetBus:
            return .reply(Self.reply(transactionID, size: size, status: .success))
        case .createSubChannels where primary:
            guard case .ready(_, let current) = state, version.supportsMultiChannel, configuration.maxSubChannels > 0 else {
                return .reply(Self.reply(transactionID, size: size, status: .invalidDeviceState))
            }
            guard let n = subChannelCount(payload), n >= current, n <= configuration.maxSubChannels else {
                return .reply(Self.reply(transactionID, size: size, status: .invalidParameter))
            }
            state = .ready(version, subChannels: n)
            return .createSubChannels(Self.reply(transactionID, size: size, status: .success), total: n)
        default:
            return .reply(Self.reply(transactionID, size: size, status: .invalidDeviceState))
        }
    }

    private func parseSRB(_ transactionID: UInt64, _ p: UnsafeRawBufferPointer, version: VStorProtocolVersion) -> Decision {
        let minimum = VStorPacket.headerSize + VMSCSIRequest.sizePreWin8
        guard p.count >= minimum else {
            return .reply(Self.srbRefusal(transactionID, version: version, status: .invalidParameter))
        }
        let cdbLength = Int(p[VMSCSIRequest.cdbLengthOffset])
        let dataIn = p[VMSCSIRequest.dataInOffset]
        let length = load32(p, VMSCSIRequest.dataTransferLengthOffset)
        var srb = VStorSRB(transactionID: transactionID,
                           pathID: p[VMSCSIRequest.pathIDOffset], targetID: p[VMSCSIRequest.targetIDOffset],
                           lun: p[VMSCSIRequest.lunOffset],
                           cdb: SCSICDB(UnsafeRawBufferPointer(rebasing: p[VMSCSIRequest.cdbOffset..<VMSCSIRequest.cdbOffset + min(max(cdbLength, 0), 16)])),
                           senseInfoLength: p[VMSCSIRequest.senseInfoLengthOffset],
                           direction: SCSIDataDirection(rawValue: dataIn) ?? .none,
                           dataTransferLength: length, srbFlags: 0, version: version)
        if version.srbSize == VMSCSIRequest.sizeWin8, p.count >= VMSCSIRequest.srbFlagsOffset + 4 {
            srb.srbFlags = load32(p, VMSCSIRequest.srbFlagsOffset)
        }
        guard cdbLength >= 1, cdbLength <= VMSCSIRequest.maxCDBLength, dataIn <= 2,
              length <= configuration.maxTransferBytes else {
            return .reply(completion(for: srb, result: .checkCondition(.illegalRequest(.invalidFieldInCDB), srbStatus: .invalidRequest)))
        }
        return .execute(srb)
    }

    private func subChannelCount(_ p: UnsafeRawBufferPointer) -> UInt16? {
        p.count >= VStorPacket.subChannelCountOffset + 2 ? load16(p, VStorPacket.subChannelCountOffset) : nil
    }

    /// The QUERY_PROPERTIES answer at `version`: multi-channel only from Win8 on and only with a
    /// sub-channel limit above 0.
    public func properties(at version: VStorProtocolVersion) -> VStorChannelProperties {
        let multi = version.supportsMultiChannel && configuration.maxSubChannels > 0
        return VStorChannelProperties(maxChannelCount: multi ? configuration.maxSubChannels : 0,
                                      flags: multi ? VStorChannelProperties.supportsMultiChannel : 0,
                                      maxTransferBytes: configuration.maxTransferBytes)
    }

    private func replySize(requestCount: Int) -> Int {
        if let v = state.version { return VStorPacket.headerSize + v.srbSize }
        let srb = min(max(requestCount - VStorPacket.headerSize, VMSCSIRequest.sizePreWin8), VMSCSIRequest.sizeWin8)
        return VStorPacket.headerSize + srb
    }

    static func reply(_ transactionID: UInt64, size: Int, operation: VStorOperation = .completeIO,
                      status: VStorStatus) -> VStorReply {
        var b = VStorPacketBytes(count: size)
        b.put32(operation.rawValue, at: VStorPacket.operationOffset)
        b.put32(status.rawValue, at: VStorPacket.statusOffset)
        return VStorReply(transactionID: transactionID, packet: b)
    }

    static func srbRefusal(_ transactionID: UInt64, version: VStorProtocolVersion, status: VStorStatus) -> VStorReply {
        var r = reply(transactionID, size: VStorPacket.headerSize + version.srbSize, status: status)
        r.packet.put16(UInt16(version.srbSize), at: VMSCSIRequest.lengthOffset)
        r.packet[VMSCSIRequest.srbStatusOffset] = SRBStatus.invalidRequest.rawValue
        return r
    }

    /// The COMPLETE_IO for an SRB that ran (or was refused by the buffer check, the controller,
    /// the disk): 12 + the SRB size of the version the SRB was parsed at.
    ///
    /// srb_status = the result's status, | AUTOSENSE_VALID (0x80) when sense is returned;
    /// scsi_status; sense_info_length and sense_data[] = the fixed-format sense, cut to what the
    /// guest asked for and to the version's buffer (20 or 18 bytes); data_transfer_length = the
    /// bytes moved; path/target/lun/cdb_length/data_in echoed. The NTSTATUS is 0 for success,
    /// STATUS_DEVICE_DOES_NOT_EXIST for INVALID_LUN and STATUS_IO_DEVICE_ERROR otherwise
    /// (OpenVMM `convert_srb_status_to_nt_status`; Linux only logs it).
    public func completion(for srb: VStorSRB, result: SCSICompletion) -> VStorReply {
        Self.completion(for: srb, result: result)
    }

    public static func completion(for srb: VStorSRB, result: SCSICompletion) -> VStorReply {
        let status: VStorStatus = switch result.srbStatus {
        case .success: .success
        case .invalidLUN: .deviceDoesNotExist
        default: .ioDeviceError
        }
        var r = reply(srb.transactionID, size: VStorPacket.headerSize + srb.version.srbSize, status: status)
        r.packet.put16(UInt16(srb.version.srbSize), at: VMSCSIRequest.lengthOffset)
        var senseCount = 0
        if let sense = result.sense {
            let bytes = sense.bytes
            senseCount = min(bytes.count, Int(srb.senseInfoLength), srb.version.senseBufferSize)
            for i in 0..<senseCount { r.packet[VMSCSIRequest.senseOffset + i] = bytes[i] }
        }
        r.packet[VMSCSIRequest.srbStatusOffset] = result.srbStatus.rawValue | (senseCount > 0 ? SRBStatus.autosenseValid : 0)
        r.packet[VMSCSIRequest.scsiStatusOffset] = result.scsiStatus.rawValue
        r.packet[VMSCSIRequest.pathIDOffset] = srb.pathID
        r.packet[VMSCSIRequest.targetIDOffset] = srb.targetID
        r.packet[VMSCSIRequest.lunOffset] = srb.lun
        r.packet[VMSCSIRequest.cdbLengthOffset] = UInt8(srb.cdb.count)
        r.packet[VMSCSIRequest.senseInfoLengthOffset] = UInt8(senseCount)
        r.packet[VMSCSIRequest.dataInOffset] = srb.direction.rawValue
        r.packet.put32(min(result.transferred, srb.dataTransferLength), at: VMSCSIRequest.dataTransferLengthOffset)
        return r
    }

    /// An unsolicited ENUMERATE_BUS (the guest rescans: a disk was added): INBAND, transaction id
    /// 0, no completion asked. Only when ready (the guest would take it as an init reply
    /// before), and from Win7 on (OpenVMM).
    public func enumerateBusPacket() -> VStorPacketBytes? { unsolicited(.enumerateBus) }

    /// An unsolicited REMOVE_DEVICE (the guest rescans: a disk went away). Only when ready.
    public func removeDevicePacket() -> VStorPacketBytes? { unsolicited(.removeDevice) }

    private func unsolicited(_ op: VStorOperation) -> VStorPacketBytes? {
        guard case .ready(let version, _) = state, version >= .win7 else { return nil }
        return Self.reply(0, size: VStorPacket.headerSize + version.srbSize, operation: op, status: .success).packet
    }
}

/// A reply to send as VM_PKT_COMP with the request's transaction id.
public struct VStorReply: Hashable, Sendable {
    public var transactionID: UInt64
    public var packet: VStorPacketBytes
    public init(transactionID: UInt64, packet: VStorPacketBytes) {
        self.transactionID = transactionID
        self.packet = packet
    }
}

@inline(__always)
func load16(_ p: UnsafeRawBufferPointer, _ at: Int) -> UInt16 { UInt16(p[at]) | UInt16(p[at + 1]) << 8 }
@inline(__always)
func load32(_ p: UnsafeRawBufferPointer, _ at: Int) -> UInt32 { UInt32(load16(p, at)) | UInt32(load16(p, at + 2)) << 16 }
