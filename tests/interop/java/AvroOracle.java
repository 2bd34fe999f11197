// Apache Avro's Java implementation as the reference for Brigade's wire format.
//
// Run with the single-file source launcher: java -cp '<avro jars>/*' AvroOracle.java <schema dir>
// Reads one JSON request on stdin and answers one JSON document on stdout, so a whole batch of
// messages costs one JVM start. Request (every list optional):
//   {"decode":     [{"id": ..., "schema": <full name read into>, "hex": <single-object bytes>}],
//    "encodeBody": [{"id": ..., "schema": <full name>, "hex": <Avro binary body>}],
//    "encodeJson": [{"id": ..., "schema": <full name>, "json": <datum in Avro's JSON encoding>}]}
// Answer: {"avroVersion": ..., "fingerprints": {<file name>: <parsingFingerprint64, unsigned>},
//          "decoded": [{"id", "datum", "reencoded"} or {"id", "error"}], "encoded": [{"id", "hex"} or {"id", "error"}]}
// Decoding uses BinaryMessageDecoder with every schema file in a SchemaStore.Cache; encoding uses
// BinaryMessageEncoder. Nothing here knows Brigade's header layout.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.avro.message.SchemaStore;

public class AvroOracle {
  private static final Pattern FILE = Pattern.compile("^(.+)\\.v(\\d+)\\.avsc$");
  private static final HexFormat HEX = HexFormat.of();

  private final SchemaStore.Cache store = new SchemaStore.Cache();
  private final Map<String, Schema> newest = new HashMap<>();
  private final Map<String, Integer> newestVersion = new HashMap<>();
  private final Map<String, BinaryMessageDecoder<GenericRecord>> decoders = new HashMap<>();

  public static void main(String[] args) throws Exception {
    ObjectMapper json = new ObjectMapper();
    JsonNode request = json.readTree(System.in);
    AvroOracle oracle = new AvroOracle();
    ObjectNode answer = json.createObjectNode();
    answer.put("avroVersion", Schema.class.getPackage().getImplementationVersion());
    oracle.load(Path.of(args[0]), answer.putObject("fingerprints"));
    ArrayNode decoded = answer.putArray("decoded");
    for (JsonNode item : request.path("decode")) {
      decoded.add(oracle.decode(item, json.createObjectNode().put("id", item.get("id").asText())));
    }
    ArrayNode encoded = answer.putArray("encoded");
    for (JsonNode item : request.path("encodeBody")) {
      encoded.add(oracle.encode(item, false, json.createObjectNode().put("id", item.get("id").asText())));
    }
    for (JsonNode item : request.path("encodeJson")) {
      encoded.add(oracle.encode(item, true, json.createObjectNode().put("id", item.get("id").asText())));
    }
    json.writeValue(System.out, answer);
  }

  private void load(Path folder, ObjectNode fingerprints) throws Exception {
    List<Path> files;
    try (var listing = Files.list(folder)) {
      files = listing.filter(p -> p.getFileName().toString().endsWith(".avsc")).sorted().toList();
    }
    for (Path file : files) {
      String fileName = file.getFileName().toString();
      Matcher match = FILE.matcher(fileName);
      if (!match.matches()) {
        throw new IllegalArgumentException(fileName + ": not <full name>.v<N>.avsc");
      }
      Schema schema = new Schema.Parser().parse(file.toFile()); // one parser per file: versions share names
      store.addSchema(schema);
      long fingerprint = SchemaNormalization.parsingFingerprint64(schema);
      fingerprints.put(fileName, Long.toUnsignedString(fingerprint));
      int version = Integer.parseInt(match.group(2));
      if (version > newestVersion.getOrDefault(schema.getFullName(), 0)) {
        newestVersion.put(schema.getFullName(), version);
        newest.put(schema.getFullName(), schema);
      }
    }
  }

  private Schema schema(String fullName) {
    Schema schema = newest.get(fullName);
    if (schema == null) {
      throw new IllegalArgumentException("no schema file for " + fullName);
    }
    return schema;
  }

  private ObjectNode decode(JsonNode item, ObjectNode out) {
    try {
      String name = item.get("schema").asText();
      BinaryMessageDecoder<GenericRecord> decoder = decoders.computeIfAbsent(
          name, n -> new BinaryMessageDecoder<>(GenericData.get(), schema(n), store));
      GenericRecord record = decoder.decode(HEX.parseHex(item.get("hex").asText()));
      out.put("schema", record.getSchema().getFullName());
      out.put("datum", record.toString());
      out.put("reencoded", hex(new BinaryMessageEncoder<GenericRecord>(GenericData.get(), record.getSchema()).encode(record)));
    } catch (Exception e) {
      out.put("error", e.getClass().getSimpleName() + ": " + e.getMessage());
    }
    return out;
  }

  private ObjectNode encode(JsonNode item, boolean fromJson, ObjectNode out) {
    try {
      Schema schema = schema(item.get("schema").asText());
      GenericDatumReader<GenericRecord> reader = new GenericDatumReader<>(schema);
      GenericRecord record = fromJson
          ? reader.read(null, DecoderFactory.get().jsonDecoder(schema, item.get("json").asText()))
          : reader.read(null, DecoderFactory.get().binaryDecoder(HEX.parseHex(item.get("hex").asText()), null));
      out.put("hex", hex(new BinaryMessageEncoder<GenericRecord>(GenericData.get(), schema).encode(record)));
    } catch (Exception e) {
      out.put("error", e.getClass().getSimpleName() + ": " + e.getMessage());
    }
    return out;
  }

  private static String hex(ByteBuffer buffer) {
    byte[] bytes = new byte[buffer.remaining()];
    buffer.get(bytes);
    return HEX.formatHex(bytes);
  }
}
