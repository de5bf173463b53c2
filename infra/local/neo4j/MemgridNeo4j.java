import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.graphdb.Result;
import org.neo4j.graphdb.Transaction;

/**
 * Runs Neo4j Community embedded with the Bolt connector on, for memgrid's local infra.
 *
 * Usage: java -cp 'classes:lib/*' MemgridNeo4j HOME_DIR NEO4J_CONF
 *
 * All Neo4j settings (Bolt address, memory, auth on/off) come from NEO4J_CONF, which
 * infra/local/mginfra/neo4j.py writes at every start. When auth is on, the password of the
 * built-in user "neo4j" is set from the environment variable MGINFRA_NEO4J_PASSWORD (kept off
 * the command line) at every start. Once the server answers queries it writes its pid to
 * HOME_DIR/ready.pid and prints "MEMGRID-NEO4J READY"; SIGTERM shuts the DBMS down cleanly
 * through a shutdown hook.
 */
public final class MemgridNeo4j {

    private MemgridNeo4j() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: MemgridNeo4j HOME_DIR NEO4J_CONF");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        Path conf = Path.of(args[1]).toAbsolutePath();
        Files.createDirectories(home);
        Path readyFile = home.resolve("ready.pid");
        Files.deleteIfExists(readyFile);

        long started = System.nanoTime();
        DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(home)
                .loadPropertiesFromFile(conf)
                .build();

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("MEMGRID-NEO4J shutting down");
            System.out.flush();
            try {
                Files.deleteIfExists(readyFile);
            } catch (java.io.IOException ignored) {
                // best effort
            }
            try {
                dbms.shutdown();
            } finally {
                System.out.println("MEMGRID-NEO4J stopped");
                System.out.flush();
                stopped.countDown();
            }
        }, "memgrid-neo4j-shutdown"));

        try {
            String password = System.getenv("MGINFRA_NEO4J_PASSWORD");
            if (password != null && !password.isEmpty()) {
                setPassword(dbms.database("system"), password);
            }
            GraphDatabaseService db = dbms.database("neo4j");
            try (Transaction tx = db.beginTx(); Result r = tx.execute("RETURN 1 AS one")) {
                r.next();
                tx.commit();
            }
        } catch (Throwable t) {
            System.err.println("MEMGRID-NEO4J start-up failed: " + t);
            t.printStackTrace();
            System.exit(1); // runs the shutdown hook, which stops the DBMS
        }
        long ms = (System.nanoTime() - started) / 1_000_000;
        // The launcher only probes Bolt once this file names our pid: probing earlier would
        // meet the not-yet-changed password and trip Neo4j's failed-login rate limit.
        Files.writeString(readyFile, ProcessHandle.current().pid() + "\n");
        System.out.println("MEMGRID-NEO4J READY in " + ms + " ms");
        System.out.flush();
        stopped.await();
    }

    /** ALTER USER is idempotent except that Neo4j refuses to "change" to the same password. */
    private static void setPassword(GraphDatabaseService system, String password) {
        try (Transaction tx = system.beginTx()) {
            tx.execute("ALTER USER neo4j SET PASSWORD $pw CHANGE NOT REQUIRED", Map.of("pw", password));
            tx.commit();
            System.out.println("MEMGRID-NEO4J password of user neo4j set");
        } catch (RuntimeException e) {
            String msg = String.valueOf(e.getMessage());
            if (msg.contains("Old password and new password cannot be the same")) {
                System.out.println("MEMGRID-NEO4J password of user neo4j unchanged");
            } else {
                throw e;
            }
        }
    }
}
