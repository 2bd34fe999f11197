// java.net.http.HttpClient with its defaults, as a Java service calling Brigade would use it.
//
// Its default version is HTTP/2, so over plain http the first request on each connection offers
// an upgrade to h2c (Connection: Upgrade, HTTP2-Settings; Upgrade: h2c; HTTP2-Settings).
// Reads a JSON array of {"url", "headers": {...}, "body"} on stdin, POSTs each in order with one
// client, and prints a JSON array of {"status", "version", "body"}.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Map;

public class HttpPost {
  public static void main(String[] args) throws Exception {
    ObjectMapper json = new ObjectMapper();
    HttpClient client = HttpClient.newHttpClient();
    ArrayNode answers = json.createArrayNode();
    for (JsonNode item : json.readTree(System.in)) {
      HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(item.get("url").asText()))
          .timeout(Duration.ofSeconds(60))
          .POST(HttpRequest.BodyPublishers.ofString(item.get("body").asText()));
      for (Map.Entry<String, JsonNode> header : item.path("headers").properties()) {
        request.header(header.getKey(), header.getValue().asText());
      }
      HttpResponse<String> response = client.send(request.build(), HttpResponse.BodyHandlers.ofString());
      answers.addObject()
          .put("status", response.statusCode())
          .put("version", response.version().toString())
          .put("body", response.body());
    }
    json.writeValue(System.out, answers);
  }
}
