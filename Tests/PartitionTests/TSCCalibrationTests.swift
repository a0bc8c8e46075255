import Partition
import Testing

@Suite struct TSCCalibrationTests {
    @Test("the narrowest window wins, at its midpoint")
    func narrowestWindow() {
        let samples = [
            TSCCalibrationSample(hostBefore: 1_000, guest: 50_000, hostAfter: 5_001_000),  // preempted: 5M ticks
            TSCCalibrationSample(hostBefore: 6_000_000, guest: 6_049_100, hostAfter: 6_000_200),
            TSCCalibrationSample(hostBefore: 7_000_000, guest: 7_049_000, hostAfter: 7_000_400),
        ]
        // 6_000_100 is the midpoint of the 200-tick window: offset 49_000.
        #expect(TSCCalibration.offset(samples) == 49_000)
        // The first sample alone would have put the offset millions of ticks off.
        #expect(TSCCalibration.offset([samples[0]]) == 50_000 &- 2_501_000)
    }

    @Test("a guest TSC behind the host's gives a wrapping offset that adds back exactly")
    func guestBehind() throws {
        let s = TSCCalibrationSample(hostBefore: 10_000_000, guest: 3_000, hostAfter: 10_000_010)
        let offset = try #require(TSCCalibration.offset([s]))
        #expect(UInt64(10_000_005) &+ offset == 3_000)
    }

    @Test("samples whose host TSC ran backwards are ignored; none usable gives nil")
    func unusable() {
        let backwards = TSCCalibrationSample(hostBefore: 100, guest: 7, hostAfter: 50)
        #expect(TSCCalibration.offset([]) == nil)
        #expect(TSCCalibration.offset([backwards]) == nil)
        let good = TSCCalibrationSample(hostBefore: 1_000, guest: 2_000, hostAfter: 1_010)
        #expect(TSCCalibration.offset([backwards, good]) == 995)
    }

    @Test("windows at the top of the TSC range do not overflow")
    func extremes() {
        let s = TSCCalibrationSample(hostBefore: .max - 10, guest: 0, hostAfter: .max)
        #expect(TSCCalibration.offset([s]) == 0 &- (UInt64.max - 5))
    }
}
