import Testing

@testable import IPC

/// The fault-injection record (type 20, docs/processes.md) and the heartbeat region's constants.
@Suite struct WorkerFaultRecordTests {
    @Test func layoutIsExplicit() throws {
        let bytes = WorkerFault(kind: .hang, argument: 30).encoded()
        // Header: type 20, version 1, body length 8; body: u16 kind, u16 reserved, u32 argument.
        #expect(bytes == [20, 0, 1, 0, 8, 0, 0, 0, 2, 0, 0, 0, 30, 0, 0, 0])
        #expect(try WireMessage.decode(bytes) == .workerFault(WorkerFault(kind: .hang, argument: 30)))
    }

    @Test func everyKindRoundTripsAtItsBounds() throws {
        for kind in WorkerFault.Kind.allCases {
            for argument in [kind.argumentRange.lowerBound, kind.argumentRange.upperBound] {
                let f = WorkerFault(kind: kind, argument: argument)
                #expect(try WorkerFault.decode(f.encoded()) == f)
            }
        }
    }

    @Test("bad records are refused", arguments: [
        [20, 0, 1, 0, 8, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0],  // unknown kind
        [20, 0, 1, 0, 8, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0],  // io-error 0
        [20, 0, 1, 0, 8, 0, 0, 0, 5, 0, 0, 0, 0x41, 0x42, 0x0F, 0],  // io-error 1000001
        [20, 0, 1, 0, 8, 0, 0, 0, 6, 0, 0, 0, 1, 0, 0, 0],  // torn with an argument
        [20, 0, 1, 0, 8, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0],  // hang 0 s
        [20, 0, 1, 0, 8, 0, 0, 0, 2, 0, 0, 0, 0x11, 0x0E, 0, 0],  // hang 3601 s
        [20, 0, 1, 0, 8, 0, 0, 0, 3, 0, 0, 0, 0x11, 0x27, 0, 0],  // slow 10001 ms
        [20, 0, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0],  // crash with an argument
        [20, 0, 1, 0, 8, 0, 0, 0, 4, 0, 1, 0, 0, 0, 0, 0],  // reserved not zero
        [20, 0, 2, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],  // version 2
        [20, 0, 1, 0, 4, 0, 0, 0, 1, 0, 0, 0],  // short body
    ] as [[UInt8]])
    func badRecords(_ bytes: [UInt8]) {
        #expect(throws: WireError.self) { try WorkerFault.decode(bytes) }
    }

    @Test func storageKindsAreNamedAndStorageOnly() throws {
        #expect(WorkerFault.Kind(name: "io-error") == .ioError && WorkerFault.Kind(name: "torn") == .torn)
        #expect(WorkerFault.Kind(name: "kill") == nil && WorkerFault.Kind(name: "crash") == .crash)
        #expect(WorkerFault.Kind.allCases.filter(\.storageOnly) == [.ioError, .torn])
        #expect(WorkerFault(kind: .ioError, argument: 3).encoded() == [20, 0, 1, 0, 8, 0, 0, 0, 5, 0, 0, 0, 3, 0, 0, 0])
    }

    @Test func heartbeatRegionIsItsOwn() {
        // Not a region id another record names (guest RAM 0, SynIC 1, state 2, device rings 3).
        #expect(![0, 1, 2, DeviceRegion.regionID].contains(WorkerHeartbeat.regionID))
        #expect(![0, 1, 2, DeviceRegion.regionID, WorkerHeartbeat.regionID].contains(StorageMetricsRegion.regionID))
        #expect(WorkerHeartbeat.slotSize == 4096 && WorkerHeartbeat.intervalMilliseconds > 0)
    }
}
