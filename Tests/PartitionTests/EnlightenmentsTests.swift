import HyperV
import Partition
import Testing

@Suite struct EnlightenmentsParseTests {
    @Test func offBaseAndDefault() throws {
        let off = try Enlightenments.parse("off")
        #expect(off.isOff)
        #expect(off == .off)
        #expect(off.features.isEmpty)
        #expect(off.names.isEmpty)

        let base = try Enlightenments.parse("base")
        #expect(!base.isOff)
        #expect(base.features.isEmpty)
        #expect(base == .base)

        let d = try Enlightenments.parse("default")
        #expect(!d.isOff)
        #expect(d == .default)
        #expect(d.names == ["runtime", "time", "reset", "frequencies", "crash", "relaxed", "ipi", "messages",
                            "synic", "stimer", "stimer-direct"])
        #expect(!d.has(.xmmInput))
    }

    @Test func defaultIsEverythingButXMMInputAndPolling() {
        #expect(Enlightenments.defaultFeatures == Set(Enlightenments.Feature.allCases).subtracting([.xmmInput, .synicPolling]))
    }

    @Test func synicAndTimerNames() throws {
        let e = try Enlightenments.parse("default,synic-polling")
        #expect(e.features == Enlightenments.defaultFeatures.union([.synicPolling]))
        #expect(Array(e.names.suffix(4)) == ["synic", "synic-polling", "stimer", "stimer-direct"])
        #expect(try Enlightenments.parse("time,synic,stimer").features == [.time, .synic, .stimer])
    }

    @Test(arguments: [
        ("stimer", EnlightenmentsError.missingDependency(feature: "stimer", needs: "time")),
        ("time,stimer", .missingDependency(feature: "stimer", needs: "synic")),
        ("synic,stimer", .missingDependency(feature: "stimer", needs: "time")),
        ("default,-synic", .missingDependency(feature: "stimer", needs: "synic")),
        ("default,-stimer", .missingDependency(feature: "stimer-direct", needs: "stimer")),
        ("synic-polling", .missingDependency(feature: "synic-polling", needs: "synic")),
        ("default,-synic,-stimer,-stimer-direct,synic,stimer-direct", .missingDependency(feature: "stimer-direct", needs: "stimer")),
        ("default,-time", .missingDependency(feature: "stimer", needs: "time")),
    ])
    func dependencies(text: String, error: EnlightenmentsError) {
        #expect(throws: error) { try Enlightenments.parse(text) }
    }

    @Test func dependencyErrorNamesBoth() {
        let text = EnlightenmentsError.missingDependency(feature: "stimer", needs: "synic").description
        #expect(text.contains("'stimer'") && text.contains("'synic'"))
        #expect(Enlightenments(features: [.stimer]).missingDependency! == (.stimer, .time), "table order")
        #expect(Enlightenments.default.missingDependency == nil)
    }

    @Test func commaList() throws {
        let e = try Enlightenments.parse("time,crash")
        #expect(e.features == [.time, .crash])
        #expect(e.has(.time) && e.has(.crash) && !e.has(.runtime))
        #expect(e.names == ["time", "crash"])

        let order = try Enlightenments.parse("crash,time")
        #expect(order == e, "order does not matter")
        #expect(order.names == ["time", "crash"], "names come in table order")

        let xmm = try Enlightenments.parse("default,xmm-input")
        #expect(xmm.features == Enlightenments.defaultFeatures.union([.xmmInput]))
    }

    @Test func spacesAroundItems() throws {
        #expect(try Enlightenments.parse(" default , -crash ") == Enlightenments(
            features: Enlightenments.defaultFeatures.subtracting([.crash])))
        #expect(try Enlightenments.parse("\toff ") == .off)
    }

    @Test func removal() throws {
        let e = try Enlightenments.parse("default,-crash,-ipi")
        #expect(e.features == Enlightenments.defaultFeatures.subtracting([.crash, .ipi]))
        #expect(try Enlightenments.parse("time,crash,-time").features == [.crash])
        #expect(try Enlightenments.parse("base,time").features == [.time])
        // Removing everything leaves the base interface, which is not off.
        let all = Enlightenments.defaultFeatures.sorted().map { "-" + $0.rawValue }
        let bare = try Enlightenments.parse((["default"] + all).joined(separator: ","))
        #expect(bare == .base)
        #expect(!bare.isOff)
    }

    @Test(arguments: [
        ("", EnlightenmentsError.empty),
        ("  ", .empty),
        ("time,,crash", .emptyItem(position: 2)),
        (",time", .emptyItem(position: 1)),
        ("time,", .emptyItem(position: 2)),
        ("time, ,crash", .emptyItem(position: 2)),
        ("bogus", .unknownName("bogus")),
        ("time,bogus", .unknownName("bogus")),
        ("-bogus", .unknownName("bogus")),
        ("Time", .unknownName("Time")),
        ("xmm_input", .unknownName("xmm_input")),
        ("on", .unknownName("on")),
        ("time,time", .duplicate("time")),
        ("default,time", .duplicate("time")),
        ("default,default", .setNotFirst("default")),
        ("default,-crash,-crash", .duplicate("-crash")),
        ("time,-time,time", .duplicate("time")),
        ("-crash", .removesNothing("crash")),
        ("default,-xmm-input", .removesNothing("xmm-input")),
        ("base,-time", .removesNothing("time")),
        ("off,time", .offNotAlone),
        ("time,off", .offNotAlone),
        ("off,off", .offNotAlone),
        ("time,default", .setNotFirst("default")),
        ("time,base", .setNotFirst("base")),
        ("default,base", .setNotFirst("base")),
    ])
    func errors(text: String, error: EnlightenmentsError) {
        #expect(throws: error) { try Enlightenments.parse(text) }
    }

    @Test func errorDescriptionsNameTheItem() {
        #expect(EnlightenmentsError.unknownName("bogus").description.contains("'bogus'"))
        #expect(EnlightenmentsError.unknownName("bogus").description.contains("xmm-input"), "lists known names")
        #expect(EnlightenmentsError.duplicate("time").description.contains("'time'"))
        #expect(EnlightenmentsError.removesNothing("crash").description.contains("'-crash'"))
        #expect(EnlightenmentsError.emptyItem(position: 3).description.contains("3"))
        #expect(EnlightenmentsError.setNotFirst("default").description.contains("'default'"))
        #expect(EnlightenmentsError.offNotAlone.description.contains("off"))
    }

    /// Every subset of the features that has its dependencies, printed and parsed back, is the
    /// same set; the others are refused with the missing dependency.
    @Test func descriptionRoundTripsForEverySubset() throws {
        let all = Enlightenments.Feature.allCases
        for mask in 0..<(1 << all.count) {
            let set = Set(all.enumerated().filter { mask & (1 << $0.offset) != 0 }.map(\.element))
            let e = Enlightenments(features: set)
            if let (feature, needed) = e.missingDependency {
                #expect(throws: EnlightenmentsError.missingDependency(feature: feature.rawValue, needs: needed.rawValue)) {
                    try Enlightenments.parse(e.description)
                }
            } else {
                #expect(try Enlightenments.parse(e.description) == e, "\(e.description)")
            }
        }
        #expect(try Enlightenments.parse(Enlightenments.off.description) == .off)
        #expect(Enlightenments.base.description == "base")
        #expect(Enlightenments.off.description == "off")
    }

    /// Every feature name parses, together with what it requires.
    @Test func everyFeatureNameParses() throws {
        for f in Enlightenments.Feature.allCases {
            var needed: Set<Enlightenments.Feature> = [f]
            while true {
                let more = needed.union(needed.flatMap(\.requires))
                if more == needed { break }
                needed = more
            }
            let text = needed.sorted().map(\.rawValue).joined(separator: ",")
            #expect(try Enlightenments.parse(text).features == needed, "\(text)")
        }
    }
}
